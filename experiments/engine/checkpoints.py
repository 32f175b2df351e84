"""The one checkpoint layout every command writes, its rotation, and the resume check.

A checkpoint is one ``torch.save`` dict (loadable with ``weights_only=True``):

======================  ===============================================================
``format``, ``version`` ``"lvmae-checkpoint"``, :data:`FORMAT_VERSION`
``command``             the command that wrote it (``pretrain``, ``finetune``, ...)
``run_id``, ``seed``    the Sacred run id (see ``run_folder``) and the run's seed
``step``                optimizer steps done
``model``               the unwrapped model's state dict (no ``module.`` / ``_orig_mod.``)
``optimizer``           its state dict; ``scheduler`` the LR schedule's
``rng``                 per rank: Python, NumPy, torch CPU (and CUDA) generator states
``data``                the data position (the pipeline's ``state_dict``)
``tracked``             the command's other state (extra generators, a discriminator, ...)
``world_size``, ``batch_size``, ``accum_steps``  the batch layout (the data position is
                        exact only under the same layout)
``gin_config``          the operative gin config with full selectors (re-parses as is)
``bindings``            every resolved binding, flat (``selector.param`` → value)
``saved_at``            UTC time of writing
======================  ===============================================================

plus what the command adds at the top level for its readers (``heads`` and ``grid`` of a
classifier, ``tokenizer_config`` of a tokenizer).

Writing is atomic (temporary file + rename), checks the free space first (``disk_space``) and
keeps the last two: the previous
``last.pt`` becomes ``previous.pt`` before the new one takes its name, so a crash at any
moment leaves at least one complete checkpoint, and :func:`load_latest` falls back to
``previous.pt`` when ``last.pt`` is missing or unreadable.
"""
from __future__ import annotations

import datetime
import os

import torch

from lvmae.experiments.engine import disk_space, gin_config
from lvmae.experiments.engine.run_folder import CHECKPOINT_NAME

FORMAT = "lvmae-checkpoint"
FORMAT_VERSION = 1
PREVIOUS_NAME = "previous.pt"
TEMPORARY_INFIX = ".tmp-"      # last.pt.tmp-<pid>: a checkpoint being written

# Parameters a resumed run may change: how long it trains and how often it logs, evaluates,
# draws or checkpoints; nothing that changes what a step computes.
RESUME_ALLOWED = frozenset({"steps", "log_every", "eval_every", "visualize_every", "checkpoint_every",
                            "checkpoint_minutes", "exit_after_step", "eval_clips"})
# The commands' own loops: a binding of another command's loop does not concern this one.
_COMMAND_LOOPS = ("pretrain_loop", "pretrain_tokenizer_loop", "finetune_loop", "probe_loop",
                  "evaluate_loop", "precompute_job", "seed_sweep", "tracking_check_loop")


class ResumeRefused(ValueError):
    """The checkpoint cannot continue in this run; the message names what differs."""


def flat_bindings() -> dict[str, object]:
    """Every resolved gin binding as ``{"[scope/]selector.param": value, "%MACRO": value}``,
    values in plain types (references keep their gin spelling)."""
    import gin.config as gin_internal
    flat = {}
    for (scope, selector), params in gin_internal._CONFIG.items():  # pylint: disable=protected-access
        for param, value in params.items():
            if selector == "gin.macro":
                flat[f"%{scope}"] = gin_config._plain(value)   # pylint: disable=protected-access
            else:
                flat[f"{scope + '/' if scope else ''}{selector}.{param}"] = gin_config._plain(value)  # pylint: disable=protected-access
    return flat


def config_differences(saved: dict, current: dict, loop: str,
                       allowed: frozenset[str] = RESUME_ALLOWED) -> list[str]:
    """``"key: saved → current"`` for each binding that differs, except allow-listed
    parameters and bindings of other commands' loops."""
    differences = []
    for key in sorted(set(saved) | set(current)):
        selector, _, param = key.rpartition(".")
        if param in allowed and not key.startswith("%"):
            continue
        other_loop = selector.rsplit(".", 1)[-1]
        if other_loop in _COMMAND_LOOPS and other_loop != loop:
            continue
        before, after = saved.get(key, "<unset>"), current.get(key, "<unset>")
        if before != after:
            differences.append(f"{key}: {before!r} → {after!r}")
    return differences


def check_resumable(state: dict, path: str, *, command: str, loop: str, seed: int,
                    layout: dict[str, int], bindings: dict) -> None:
    """Raises ResumeRefused, naming what differs, unless ``state`` can continue this run:
    same format, command, seed, batch layout and bindings (beyond :data:`RESUME_ALLOWED`)."""
    if state.get("format") != FORMAT or state.get("version") != FORMAT_VERSION:
        raise ResumeRefused(f"cannot resume {path!r}: it is not an lvmae checkpoint of format version "
                            f"{FORMAT_VERSION} (found {state.get('format')!r} version {state.get('version')!r})")
    if state.get("command") != command:
        raise ResumeRefused(f"cannot resume {path!r}: it was written by {state.get('command')!r}, not {command!r}")
    if int(state["seed"]) != int(seed):
        raise ResumeRefused(f"cannot resume {path!r}: it was trained with seed {state['seed']}, this run has "
                            f"seed {seed}; the seed is never replaced — rerun with `with seed={state['seed']}`")
    saved_layout = {key: state.get(key) for key in layout}
    if saved_layout != layout:
        raise ResumeRefused(f"cannot resume {path!r}: it was written with {saved_layout}, this run has "
                            f"{layout}; the data position needs the same batch layout")
    differences = config_differences(state.get("bindings", {}), bindings, loop)
    if differences:
        raise ResumeRefused(f"cannot resume {path!r}: the gin config differs from the checkpoint's "
                            f"(only {sorted(RESUME_ALLOWED)} may change):\n  " + "\n  ".join(differences))


def save_rotating(folder: str, state: dict) -> str:
    """Writes ``folder/last.pt`` atomically and keeps the one before as ``previous.pt``.

    The free space is checked first (the checkpoint's estimated size against the file
    system's free bytes); a write that fails anyway removes its temporary file. Either way the
    previous checkpoint is untouched and the error (``disk_space.CheckpointSpaceError``) says
    in one paragraph the folder, the bytes needed and the bytes free."""
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, CHECKPOINT_NAME)
    for name in os.listdir(folder):          # left by a process killed mid-write (one writer per folder)
        if name.startswith(f"{CHECKPOINT_NAME}{TEMPORARY_INFIX}"):
            os.remove(os.path.join(folder, name))
    temporary = f"{path}{TEMPORARY_INFIX}{os.getpid()}"
    what = f"the checkpoint of step {state.get('step')}"
    needed = disk_space.state_bytes(state)
    disk_space.require_room(folder, needed, what)
    try:
        torch.save({**state, "saved_at": datetime.datetime.now(datetime.timezone.utc).isoformat()}, temporary)
    except BaseException as error:
        if os.path.lexists(temporary):
            os.remove(temporary)
        if disk_space.full_disk(error):
            raise disk_space.write_failed(folder, needed, what, error) from error
        raise
    if os.path.isfile(path):
        os.replace(path, os.path.join(folder, PREVIOUS_NAME))
    os.replace(temporary, path)
    return path


def load_latest(folder: str, mmap: bool = False) -> tuple[dict, str] | None:
    """The newest readable checkpoint of ``folder`` and its path, or None when there is none
    (``mmap``: tensors stay on disk until read — a quick look at the metadata)."""
    errors = []
    for name in (CHECKPOINT_NAME, PREVIOUS_NAME):
        path = os.path.join(folder, name)
        if not os.path.isfile(path):
            continue
        try:
            return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap), path
        except Exception as error:  # noqa: BLE001  (a truncated or foreign file: try the one before)
            errors.append(f"{path}: {error}")
    if errors:
        raise ResumeRefused("no readable checkpoint in " + folder + ":\n  " + "\n  ".join(errors))
    return None
