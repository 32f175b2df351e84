#!/usr/bin/env bash
# Creates .venv with torch 2.13.0 (installed first: a bare `torch` requirement would pull a
# multi-GB CUDA build) and lvmae with its test and local-database extras, at the exact versions
# of constraints.txt (pyproject.toml declares ranges). Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip >/dev/null 2>&1 || true
.venv/bin/python -c "import torch, sys; sys.exit(torch.__version__.split('+')[0] != '2.13.0')" 2>/dev/null \
  || .venv/bin/pip install -q -c constraints.txt torch
# torchcodec (video_decoder.torchcodec) loads FFmpeg's shared libraries from the system (PyAV
# bundles its own). Installed when missing and this shell may (root, or password-less sudo);
# otherwise a note: the decoder stays optional and PyAV works without them.
FFMPEG_LIBS="libavcodec59 libavformat59 libavutil57 libswscale6 libswresample4 libavdevice59 libavfilter8"
if ! { ldconfig -p || /sbin/ldconfig -p; } 2>/dev/null | grep -q 'libavcodec\.so'; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    SUDO=""
  elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
    SUDO="sudo -n"
  else
    SUDO="none"
  fi
  if [ "$SUDO" != none ] && command -v apt-get >/dev/null; then
    { $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq \
        --no-install-recommends $FFMPEG_LIBS >/dev/null; } \
      || echo "note: apt-get could not install FFmpeg's libraries ($FFMPEG_LIBS); video_decoder.torchcodec will not load"
  else
    echo "note: FFmpeg's shared libraries are missing and this shell cannot install them (not root, no"
    echo "      password-less sudo): ask for 'apt-get install $FFMPEG_LIBS' to use video_decoder.torchcodec"
  fi
fi
.venv/bin/pip install -q -c constraints.txt -e ".[localdb,test,torchcodec]"
echo "lvmae environment ready: $(pwd)/.venv"
