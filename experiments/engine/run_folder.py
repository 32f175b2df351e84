"""One folder per run, explicit resume, and how a later stage finds an earlier run's output.

Every command that trains or predicts works in ``WORKDIR/<stage>/<run folder>``: the stage is
the command's folder name (``pretrain``, ``tokenizer`` for ``pretrain_tokenizer``, ``finetune``,
``probe``, ``evaluate``). The run folder is claimed with an exclusive ``mkdir``, so no other
run can get it, whichever run store records the run: the Sacred run's ``_id`` (the store's
run number) when that folder is free, else ``<id>-<token>`` (a random token) — the database
and the file store, another ``LVMAE_RUNS_DIR`` or a new database all number their runs from 1.
An unobserved run (``-u``) gets a fresh ``u<UTC time>-<pid>``. The folder is recorded in the
run (``info.run_folder``), where ``run.py resume N`` and ``run:N`` find it.

Resume is explicit: ``run.py COMMAND ... --resume-run N`` continues run N in its recorded
folder (the command line sets :func:`request_resume`; a run that recorded no folder continues
``WORKDIR/<stage>/N``).

When a run completes, its final checkpoint is also published as ``WORKDIR/<stage>/last.pt``
(a link to ``<run folder>/last.pt``): the newest *completed* run of that stage. Downstream
stages take an explicit path (that one, or any other) or a run: ``run:N`` means the
``last.pt`` of run N's folder in the stage that produces the input (see :func:`resolve_input`).
"""
from __future__ import annotations

import datetime
import os
import secrets

CHECKPOINT_NAME = "last.pt"
RUN_PREFIX = "run:"
# Weights of an ``lvmae export`` folder, in the order a folder given as input is searched.
EXPORT_WEIGHTS = (("model.safetensors",), ("lvmae", "model.safetensors"))

# Random bytes (two hex characters each) of the token that tells two runs with one store id apart.
TOKEN_BYTES = 3
_resume_request: dict[str, str | None] = {"run": None, "folder": None}


def request_resume(run_id: int | str | None, folder: str | None = None) -> None:
    """Called by the command line for ``--resume-run N``: the run continues run N's folder,
    ``folder`` (the name the run recorded in ``info.run_folder``) or else ``N``."""
    _resume_request["run"] = None if run_id is None else str(run_id)
    _resume_request["folder"] = None if run_id is None or not folder else os.path.basename(str(folder).rstrip("/\\"))


def requested_resume() -> str | None:
    return _resume_request["run"]


def requested_folder() -> str | None:
    """The folder name of the run ``--resume-run`` continues (None: ``N`` itself)."""
    return _resume_request["folder"]


def claim_folder(workdir: str, stage: str, run_id: str) -> str:
    """Creates and returns a run folder no other run has: ``WORKDIR/<stage>/<run id>`` when it
    does not exist yet, else ``<run id>-<token>`` (``mkdir`` is exclusive, so two processes never
    get the same one)."""
    os.makedirs(os.path.join(workdir, stage), exist_ok=True)
    name = str(run_id)
    while True:
        try:
            os.mkdir(run_folder(workdir, stage, name))
            return run_folder(workdir, stage, name)
        except FileExistsError:
            name = f"{run_id}-{secrets.token_hex(TOKEN_BYTES)}"


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


def publish(workdir: str, stage: str, folder_name: str) -> str:
    """Points ``WORKDIR/<stage>/last.pt`` at the final checkpoint of the run folder
    ``folder_name`` (atomically: a link made under a temporary name, then renamed); a copy where
    links are not supported."""
    target = os.path.join(str(folder_name), CHECKPOINT_NAME)
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
        return _run_checkpoint(run_id, spec, workdir, stage, parameter)
    if os.path.isdir(spec):
        # an `lvmae export` folder: its transformers (or lvmae) weights, when it holds no last.pt
        exported = [os.path.join(spec, *parts) for parts in EXPORT_WEIGHTS]
        spec = next((p for p in [os.path.join(spec, CHECKPOINT_NAME), *exported] if os.path.isfile(p)),
                    os.path.join(spec, CHECKPOINT_NAME))
    if not os.path.isfile(spec):
        raise FileNotFoundError(f"{parameter}: checkpoint not found: {spec!r}")
    return spec


def _run_checkpoint(run_id: str, spec: str, workdir: str, stage: str, parameter: str) -> str:
    """``last.pt`` of run ``run_id``'s folder: ``N`` or ``N-<token>``; when several hold a
    checkpoint (runs of different stores), the one run N of the current store recorded."""
    folders = [name for name in _runs(workdir, stage) if name == run_id or name.startswith(f"{run_id}-")]
    if len(folders) > 1:
        recorded = recorded_folder(run_id)
        folders = [recorded] if recorded in folders else folders
    if len(folders) == 1:
        return os.path.join(run_folder(workdir, stage, folders[0]), CHECKPOINT_NAME)
    if not folders:
        path = os.path.join(run_folder(workdir, stage, run_id), CHECKPOINT_NAME)
        raise FileNotFoundError(f"{parameter}={spec!r}: run {run_id} of {stage!r} has no checkpoint "
                                f"at {path!r} (runs of {stage!r}: {_runs(workdir, stage)})")
    raise FileNotFoundError(f"{parameter}={spec!r}: {len(folders)} folders of {stage!r} belong to a run {run_id} "
                            f"({', '.join(folders)}: runs of different run stores) and the current store does not "
                            f"say which is its run {run_id}; give the checkpoint's path instead, e.g. "
                            f"{os.path.join(workdir, stage, folders[0], CHECKPOINT_NAME)!r}")


def recorded_folder(run_id: str) -> str | None:
    """The folder name run ``run_id`` recorded (``info.run_folder``) in the store runs are
    recorded in now; None when the store cannot say (no such run, no folder, no store)."""
    try:
        from lvmae.experiments.commands.resume import stored_run
        folder = (stored_run(int(run_id)).get("info") or {}).get("run_folder")
    except Exception:  # noqa: BLE001  (no store to ask, or a run it does not know: the caller decides)
        return None
    return os.path.basename(str(folder).rstrip("/\\")) if folder else None


def _runs(workdir: str, stage: str) -> list[str]:
    folder = os.path.join(workdir, stage)
    if not os.path.isdir(folder):
        return []
    return sorted(name for name in os.listdir(folder)
                  if os.path.isfile(os.path.join(folder, name, CHECKPOINT_NAME)))
