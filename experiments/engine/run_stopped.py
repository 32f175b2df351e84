"""A run that stops inside its record for a reason one paragraph says: Sacred records it as
FAILED with that message and prints the paragraph, not a traceback (``-d`` shows it)."""
from __future__ import annotations

from sacred.utils import SacredError


class RunStopped(SacredError):
    """The run cannot go on (a full disk, a non-finite value, a plugin that broke its contract
    mid-run); the message names what, where and the last good checkpoint."""

    def __init__(self, message: str):
        super().__init__(message, print_traceback=False)


class NonFiniteValue(RunStopped, FloatingPointError):
    """The NaN guard found a non-finite loss or component output; the message names the
    component it came from first and the last good checkpoint."""
