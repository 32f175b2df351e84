"""Room for checkpoints: how many bytes a checkpoint takes and whether its folder has them.

A checkpoint write checks the free space of its folder first (:func:`require_room`) and, when a
write fails anyway (another process filled the disk meanwhile), removes its temporary file and
says so in one paragraph (:class:`CheckpointSpaceError`); the previous checkpoint is never
touched before the new one is complete. The preflight warns when WORKDIR cannot hold the two
checkpoints a run keeps (:func:`room_warning`).
"""
from __future__ import annotations

import errno
import os
import shutil

import torch
from torch import nn

from lvmae.experiments.engine.run_stopped import RunStopped

# Bytes a checkpoint takes besides its tensors (pickled metadata, gin config, zip headers).
CHECKPOINT_OVERHEAD_BYTES = 1 << 20
# What AdamW keeps per parameter besides the parameter: its two moments.
OPTIMIZER_COPIES = 2
# Checkpoints a run keeps in its folder (last.pt and previous.pt, plus the one being written
# replaces previous.pt only once complete).
KEPT_CHECKPOINTS = 2
# Messages torch.save's zip writer gives for a write the file system refused.
_FULL_DISK_SIGNS = ("unexpected pos", "No space left", "file write failed", "enforce fail")


class CheckpointSpaceError(RunStopped, OSError):
    """A checkpoint does not fit (or did not fit) where it is written."""


def free_bytes(path: str) -> int:
    """Free bytes of the file system holding ``path`` (or its nearest existing parent)."""
    path = os.path.abspath(path)
    while not os.path.exists(path) and os.path.dirname(path) != path:
        path = os.path.dirname(path)
    return shutil.disk_usage(path).free


def state_bytes(state) -> int:
    """Bytes of the tensors in a checkpoint state (dicts, lists and tuples walked) plus
    :data:`CHECKPOINT_OVERHEAD_BYTES`."""
    def tensors(value) -> int:
        if isinstance(value, torch.Tensor):
            return value.numel() * value.element_size()
        if isinstance(value, dict):
            return sum(tensors(v) for v in value.values())
        if isinstance(value, (list, tuple)):
            return sum(tensors(v) for v in value)
        return 0
    return tensors(state) + CHECKPOINT_OVERHEAD_BYTES


def model_checkpoint_bytes(model: nn.Module) -> int:
    """Estimated bytes of a training checkpoint of ``model``: its weights and buffers and the
    optimizer's moments of every trained parameter."""
    weights = sum(t.numel() * t.element_size() for t in [*model.parameters(), *model.buffers()])
    moments = sum(p.numel() * p.element_size() for p in model.parameters() if p.requires_grad)
    return weights + OPTIMIZER_COPIES * moments + CHECKPOINT_OVERHEAD_BYTES


def _size(count: int) -> str:
    return f"{count:,} bytes ({count / 2**20:.1f} MiB)"


def require_room(folder: str, needed: int, what: str) -> None:
    """Raises CheckpointSpaceError when ``folder``'s file system has fewer than ``needed`` free
    bytes."""
    free = free_bytes(folder)
    if free < needed:
        raise CheckpointSpaceError(f"not enough disk space for {what} in {folder!r}: it needs about "
                                   f"{_size(needed)}, the file system has {_size(free)} free; nothing was "
                                   f"written and the checkpoints already there are kept. Free some space or "
                                   f"move WORKDIR, then resume the run")


def full_disk(error: BaseException) -> bool:
    """Whether a failed write looks like a full file system (ENOSPC, or torch.save's zip writer)."""
    if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    return isinstance(error, (OSError, RuntimeError)) and any(sign in str(error) for sign in _FULL_DISK_SIGNS)


def write_failed(folder: str, needed: int, what: str, error: BaseException) -> CheckpointSpaceError:
    """The one-paragraph error of a write that the file system refused."""
    reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return CheckpointSpaceError(f"writing {what} into {folder!r} failed: the file system ran out of space "
                                f"({reason}); it needs about {_size(needed)}, {_size(free_bytes(folder))} are "
                                f"free now. The unfinished file was removed and the checkpoints already there "
                                f"are kept. Free some space or move WORKDIR, then resume the run")


def room_warning(workdir: str, model: nn.Module) -> str | None:
    """A line when ``workdir`` cannot hold the checkpoints a run of ``model`` keeps; None when
    it can."""
    needed = KEPT_CHECKPOINTS * model_checkpoint_bytes(model)
    free = free_bytes(workdir)
    if free >= needed:
        return None
    return (f"warning: WORKDIR {workdir!r} has {_size(free)} free, but the run keeps {KEPT_CHECKPOINTS} "
            f"checkpoints of about {_size(needed // KEPT_CHECKPOINTS)} each: a checkpoint write will stop "
            f"the run when the disk is full")
