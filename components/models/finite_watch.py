"""Which component gave a value that is not finite: one device flag per source (a scorer's
scores, a target's targets, the decoder's predictions, the loss), accumulated every step
without reading the device, and read by the engine's NaN guard where it reads the loss flag
anyway (logging steps, before a checkpoint). The first source noted is where NaNs began."""
from __future__ import annotations

import torch


class FiniteWatch:
    """``note(source, tensor)`` every step; ``nonfinite()`` (host reads) at the guard."""

    def __init__(self):
        self._flags: dict[str, torch.Tensor] = {}

    def note(self, source: str, value: torch.Tensor) -> None:
        """Remembers (on the tensor's device, no host read) whether ``value`` held a NaN or ±inf."""
        bad = ~torch.isfinite(value.detach()).all()
        held = self._flags.get(source)
        self._flags[source] = bad if held is None else held | bad.to(held.device)

    def nonfinite(self) -> list[str]:
        """The sources that gave a non-finite value since the watch began, in the order they were
        first noted (each flag read on the host: call it where the step synchronises anyway)."""
        return [source for source, flag in self._flags.items() if bool(flag)]
