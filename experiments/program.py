"""The command the user typed, for usage lines and messages: ``lvmae`` (the console script)
or ``python run.py`` (a checkout).

The CLI records it from its ``argv[0]``; a command that starts more lvmae processes (``sweep``)
passes it on in ``LVMAE_PROGRAM`` so that their messages name it too.
"""
from __future__ import annotations

import os
import sys
from typing import NoReturn

PROGRAM_ENV = "LVMAE_PROGRAM"
# The exit status of refused input (a bad option, binding, file, run id ...), as argparse uses.
REFUSED_STATUS = 2
CONSOLE_SCRIPT = "lvmae"
CHECKOUT = "python run.py"
_typed: str | None = None


def from_argv0(argv0: str) -> str:
    """``lvmae`` for the console script (any path to it), else ``python run.py``."""
    return CONSOLE_SCRIPT if os.path.basename(argv0) == CONSOLE_SCRIPT else CHECKOUT


def remember(argv0: str) -> None:
    """Called by the CLI with its ``argv[0]``."""
    global _typed
    _typed = from_argv0(argv0)


def name() -> str:
    """``lvmae`` or ``python run.py``: what the user typed (or the parent lvmae process's)."""
    return os.environ.get(PROGRAM_ENV) or _typed or from_argv0(sys.argv[0] if sys.argv else "")


def environment() -> dict[str, str]:
    """The environment for a child lvmae process: this one's, plus the program name."""
    return {**os.environ, PROGRAM_ENV: name()}


def refuse(message: str) -> NoReturn:
    """Refused input: ``message`` (one paragraph) on stderr, exit status 2."""
    print(message, file=sys.stderr)
    raise SystemExit(REFUSED_STATUS)
