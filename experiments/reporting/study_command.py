"""The ``run.py`` command line of one stage of one (arm, seed[, task]) of a study, and the
configuration hash that identifies it.

The hash covers what defines the run: the stage, the seed, the gin files in the order the runner
passes them, and the full ordered list of bindings (the study's, the chaining macros, the arm's,
the task's and any extra ``-b``). The work folders inside those bindings are written from a
placeholder root, not the machine's absolute ``--root``, so the same study file gives the same
hashes on every machine and under any ``--root``. A gin file is hashed by its name as passed (a
path inside the repository is made relative to it): an edit inside a gin file does not change the
hash; each run keeps its operative config for that. The runner tags every run ``config=<hash>``,
and a stored run counts for the study only while its tag equals the hash the study file gives now.
"""
from __future__ import annotations

import hashlib
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path

from lvmae.experiments.reporting.study_file import EVALUATED, SHARED, Study, load_study, prepare_owner
from lvmae.experiments.reporting.study_runs import ARM_TAG, CONFIG_TAG, STUDY_TAG, TASK_TAG, StoredRun

ROOT = Path(__file__).resolve().parents[2]
HASH_ROOT = "<STUDY_ROOT>"      # stands for the absolute --root inside hashed bindings
HASH_VERSION = 1                # bump when what the hash covers changes (every stored run turns stale)
HASH_CHARS = 16                 # hex digits kept: 64 bits, no collision among a study's runs


def workdir_of(root: str, study: Study, arm: str, seed: int) -> str:
    return os.path.abspath(_folder(os.path.abspath(root), study, arm, seed))


def _folder(root: str, study: Study, arm: str, seed: int) -> str:
    return os.path.join(root, study.name, arm, f"seed_{seed}")


def chain_bindings(study: Study, workdir: str, shared: str, stage: str) -> list[str]:
    """The macros and inputs that link ``stage`` to the stages before it (in ``shared`` when
    they are ``prepare`` stages, else in this arm's ``workdir``)."""
    where = {s: shared for s in study.prepare} | {s: workdir for s in study.stages}
    bindings = []
    if "pretrain_tokenizer" in where:
        folder = where["pretrain_tokenizer"]
        bindings += [f"TOKENIZER_WORKDIR = '{folder}'", f"TOKENIZER_CHECKPOINT = '{folder}/tokenizer/last.pt'"]
    if "precompute" in where:
        folder = where["precompute"]
        bindings += [f"PRECOMPUTED_DIR = '{folder}/precomputed'",
                     f"PRECOMPUTED_MANIFEST = '{folder}/precomputed/manifest.yaml'"]
    if stage in EVALUATED:
        checkpoint = f"'{where['pretrain']}/pretrain/last.pt'" if "pretrain" in where else "None"
        bindings.append(f"{stage}_loop.pretrained = {checkpoint}")
    return bindings


def stage_config(study: Study, arm: str, seed: int, stage: str, root: str, overrides: list[str],
                 extra: list[str], task: str | None = None) -> tuple[list[str], list[str]]:
    """The gin files and the ordered bindings of one stage of one (arm, seed), its work folders
    under ``root`` taken as it is (absolute, or ``HASH_ROOT``); ``arm`` is ``_shared`` for a
    ``prepare`` stage (no arm bindings). With ``task``, an evaluated stage runs on that task's
    data (its bindings after the arm's) in the sub-folder ``<task>`` of the arm's folder, still
    reading the arm's pre-trained encoder."""
    shared = _folder(root, prepare_owner(study), SHARED, seed)
    workdir = shared if arm == SHARED else _folder(root, study, arm, seed)
    # A task's entries are gin files (``*.gin``, added after the study's) and bindings.
    task_items = study.tasks[task] if task is not None else []
    gin_files = [*study.gin, *overrides, *(item for item in task_items if item.endswith(".gin"))]
    # The arm's bindings come after the chaining ones, so an arm may override an input (e.g.
    # probe_loop.pretrained = None: the random-encoder control); extra (-b) ones come last.
    chain = chain_bindings(study, workdir, shared, stage)
    if task is not None:
        workdir = os.path.join(workdir, task)
    bindings = [*study.bindings, f"WORKDIR = '{workdir}'", *chain, *study.arms.get(arm, []),
                *(item for item in task_items if not item.endswith(".gin")), *extra]
    return gin_files, bindings


def config_hash(study: Study, arm: str, seed: int, stage: str, overrides: list[str], extra: list[str],
                task: str | None = None) -> str:
    """The configuration hash of one (arm, seed, stage[, task]): the same on every machine."""
    gin_files, bindings = stage_config(study, arm, seed, stage, HASH_ROOT, overrides, extra, task)
    gin_files = [_repository_relative(name) for name in gin_files]
    payload = json.dumps({"version": HASH_VERSION, "stage": stage, "seed": seed, "gin": gin_files,
                          "bindings": bindings}, sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()[:HASH_CHARS]


def _repository_relative(name: str) -> str:
    path = Path(name)
    return path.relative_to(ROOT).as_posix() if path.is_absolute() and path.is_relative_to(ROOT) else name


def stage_command(study: Study, arm: str, seed: int, stage: str, root: str,
                  overrides: list[str], extra: list[str], task: str | None = None) -> list[str]:
    """The ``run.py`` command line of one stage of one (arm, seed[, task]) (see ``stage_config``),
    tagged with its study, arm, task and configuration hash."""
    gin_files, bindings = stage_config(study, arm, seed, stage, os.path.abspath(root), overrides, extra, task)
    args = [*launcher(), stage]
    for gin_file in gin_files:
        args += ["-g", gin_file]
    for binding in bindings:
        args += ["-b", binding]
    tagged = prepare_owner(study) if arm == SHARED else study
    tags = [STUDY_TAG + tagged.name, ARM_TAG + arm] + ([TASK_TAG + task] if task is not None else [])
    tags.append(CONFIG_TAG + config_hash(study, arm, seed, stage, overrides, extra, task))
    return args + [word for tag in tags for word in ("--tag", tag)] + ["with", f"seed={seed}"]


def launcher() -> list[str]:
    """How a stage is started: the checkout's ``run.py`` (works before installation), or, from an
    installed package (no run.py beside it), the command line module of the same interpreter."""
    script = ROOT / "run.py"
    return [sys.executable, str(script)] if script.is_file() else [sys.executable, "-m", "lvmae.experiments.commands.cli"]


def expected_hash(study: Study, overrides: list[str], extra: list[str]) -> Callable[[StoredRun], str | None]:
    """``run → the configuration hash the study files give it now``. A run is hashed as the study
    it is tagged with ran it (this one, its ``prepared_by`` owner for shared runs, or the study a
    ``reuse``d arm comes from: a study file of that name beside this one), under its tagged arm;
    None when that study file is gone."""
    studies: dict[str, Study | None] = {study.name: study}

    def expected(run: StoredRun) -> str | None:
        if run.study not in studies:
            path = Path(study.path).with_name(run.study + ".yaml")
            studies[run.study] = load_study(str(path)) if path.is_file() else None
        source = studies[run.study]
        if source is None or run.origin_arm not in [SHARED, *source.arms]:
            return None
        return config_hash(source, run.origin_arm, run.seed, run.command, overrides, extra, run.task)

    return expected
