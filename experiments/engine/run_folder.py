"""One folder per run, explicit resume, and how a later stage finds an earlier run's output.

Every command that trains or predicts works in ``WORKDIR/<stage>/<run id>``: the stage is the
command's folder name (``pretrain``, ``tokenizer`` for ``pretrain_tokenizer``, ``finetune``,
``probe``, ``evaluate``); the run id is the Sacred run's ``_id`` (the database's run number),
or, for an unobserved run (``-u``), a fresh ``u<UTC time>-<pid>`` that no other run gets. Two
runs therefore never write, or resume from, the same checkpoint by accident.

Resume is explicit: ``run.py COMMAND ... --resume-run N`` continues run N in its own folder
(the command line sets :func:`request_resume`). A run that was not asked to resume refuses a
folder that already holds a checkpoint (another database that reused the id) instead of
overwriting or silently continuing it.

When a run completes, its final checkpoint is also published as ``WORKDIR/<stage>/last.pt``
(a link to ``<run id>/last.pt``): the newest *completed* run of that stage. Downstream
stages take an explicit path (that one, or any other) or a run: ``run:N`` means
``WORKDIR/<stage>/N/last.pt`` of the stage that produces the input (see
:func:`resolve_input`).
"""
from __future__ import annotations

import datetime
import os

CHECKPOINT_NAME = "last.pt"
RUN_PREFIX = "run:"
# Weights of an ``lvmae export`` folder, in the order a folder given as input is searched.
EXPORT_WEIGHTS = (("model.safetensors",), ("lvmae", "model.safetensors"))

_resume_request: dict[str, str | None] = {"run": None}


def request_resume(run_id: int | str | None) -> None:
    """Called by the command line for ``--resume-run N``: the run continues run N's folder."""
    _resume_request["run"] = None if run_id is None else str(run_id)


def requested_resume() -> str | None:
    return _resume_request["run"]


def run_id_of(run) -> str:
    """The Sacred run's id, or a fresh unique id for an unobserved run (or no run)."""
    run_id = getattr(run, "_id", None)
    if run_id is not None:
        return str(run_id)
    if requested_resume() is not None:
        return requested_resume()
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%d-%H%M%S-%f")
    return f"u{stamp}-{os.getpid()}"


def run_folder(workdir: str, stage: str, run_id: str) -> str:
    return os.path.join(workdir, stage, str(run_id))


def publish(workdir: str, stage: str, run_id: str) -> str:
    """Points ``WORKDIR/<stage>/last.pt`` at this run's final checkpoint (atomically: a link
    made under a temporary name, then renamed); a copy where links are not supported."""
    target = os.path.join(str(run_id), CHECKPOINT_NAME)
    published = os.path.join(workdir, stage, CHECKPOINT_NAME)
    temporary = f"{published}.tmp-{os.getpid()}"
    if os.path.lexists(temporary):
        os.remove(temporary)
    try:
        os.symlink(target, temporary)
    except OSError:           # no symlinks here (some network or Windows file systems)
        import shutil
        shutil.copyfile(os.path.join(workdir, stage, target), temporary)
    os.replace(temporary, published)
    return published


def resolve_input(spec: str | None, workdir: str, stage: str, parameter: str) -> str | None:
    """An input checkpoint given as a path (a file, a run folder holding ``last.pt``, or an
    ``lvmae export`` folder: its ``model.safetensors``) or as ``run:N`` (run N of ``stage``
    under ``workdir``). Raises FileNotFoundError naming ``parameter`` and the path looked at."""
    if not spec:
        return None
    spec = str(spec)
    if spec.startswith(RUN_PREFIX):
        run_id = spec[len(RUN_PREFIX):].strip()
        if not run_id:
            raise ValueError(f"{parameter}={spec!r}: give a run id after {RUN_PREFIX!r}, e.g. 'run:3'")
        path = os.path.join(run_folder(workdir, stage, run_id), CHECKPOINT_NAME)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"{parameter}={spec!r}: run {run_id} of {stage!r} has no checkpoint "
                                    f"at {path!r} (runs of {stage!r}: {_runs(workdir, stage)})")
        return path
    if os.path.isdir(spec):
        # an `lvmae export` folder: its transformers (or lvmae) weights, when it holds no last.pt
        exported = [os.path.join(spec, *parts) for parts in EXPORT_WEIGHTS]
        spec = next((p for p in [os.path.join(spec, CHECKPOINT_NAME), *exported] if os.path.isfile(p)),
                    os.path.join(spec, CHECKPOINT_NAME))
    if not os.path.isfile(spec):
        raise FileNotFoundError(f"{parameter}: checkpoint not found: {spec!r}")
    return spec


def _runs(workdir: str, stage: str) -> list[str]:
    folder = os.path.join(workdir, stage)
    if not os.path.isdir(folder):
        return []
    return sorted(name for name in os.listdir(folder)
                  if os.path.isfile(os.path.join(folder, name, CHECKPOINT_NAME)))
