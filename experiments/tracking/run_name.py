"""A run's name in the run list: its command and its experiment, e.g. ``pretrain · lvmae_cpu``.

Sacred records every run of the one experiment under the experiment's name (``lvmae``), so
Omniboard's run list would name every stage alike and only its Command column would tell
them apart. The name shown (``experiment.name`` of the run document) is instead the command
and the gin ``EXPERIMENT`` macro of the run's files (else the stem of its last gin file);
tags stay in ``omniboard.tags`` beside it.
"""
from __future__ import annotations

import os

SEPARATOR = " · "
EXPERIMENT_MACRO = "EXPERIMENT"


def run_name(command: str, config: dict) -> str:
    """``command · experiment`` from a run's config (``gin.macros.EXPERIMENT``, else the
    last of ``gin_files``); the command alone when neither says."""
    gin = config.get("gin") or {}
    experiment = (gin.get("macros") or {}).get(EXPERIMENT_MACRO)
    files = gin.get("files") or config.get("gin_files") or []
    if not experiment and files:
        experiment = os.path.splitext(os.path.basename(str(files[-1])))[0]
    return f"{command}{SEPARATOR}{experiment}" if experiment else command


def name_run(run) -> None:
    """Names a created (not yet started) Sacred run after its command and experiment."""
    run.experiment_info = {**run.experiment_info, "name": run_name(run.meta_info.get("command", ""), run.config)}
