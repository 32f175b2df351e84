"""``python run.py sweep``: one command over a grid (or a list) of gin bindings × seeds, each
member an ordinary recorded run with its own work folder.

    python run.py sweep pretrain -g gin/experiments/tiny_cpu.gin -b 'pretrain_loop.steps=30' \\
        --grid 'masking.decoder.random.budget=[0.15,0.25,0.5]' --seeds 3 --tag budget-sweep
    python run.py report --tag budget-sweep --by masking.decoder.random.budget

Members are the product of every ``--grid BINDING=[v1,v2,...]`` (or the ``--variant``
binding sets, ``;`` between bindings) and the seeds ``--first-seed`` .. ``+ --seeds - 1``.
Each member runs ``python run.py COMMAND`` in a subprocess with its bindings, ``seed``, the
sweep's tags and ``WORKDIR`` = ``<workdir>/<tag>/<member>`` (its own folder: two members never
share a checkpoint; inputs a gin file derives from WORKDIR, such as a fine-tuning sweep's
``PRETRAINED``, then point there too — bind them explicitly, or pass ``--shared-workdir``); its
output goes to ``<member folder>/log.txt``. ``--jobs N`` runs N at a
time. Every configuration goes through preflight before the first member starts.

Resumable: ``<workdir>/<tag>/sweep.json`` records each member's run id and status. Running
the same sweep again skips the COMPLETED members, continues the interrupted ones with
``python run.py resume RUN_ID`` when that command exists (else reruns them in their folder)
and runs the rest. ``--emit FILE`` writes the member command lines instead (one per line, for
any scheduler); ``--slurm-folder DIR`` submits them as a Slurm job array through ``submitit``
(``pip install submitit``; ``--slurm KEY=VALUE`` sets its parameters, e.g. ``slurm_partition=gpu``).
"""
from __future__ import annotations

import argparse
import ast
import dataclasses
import hashlib
import itertools
import json
import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

from lvmae.experiments import program

RUN_PY = Path(__file__).resolve().parents[2] / "run.py"
# How a member runs: run.py in a checkout; installed there is no run.py, the CLI module runs.
ENTRY = [str(RUN_PY)] if RUN_PY.is_file() else ["-m", "lvmae.experiments.commands.cli"]
STATE_FILE = "sweep.json"
COMPLETED = "COMPLETED"
STARTED_RUN = re.compile(r'Started run with ID "?(\d+)"?')
POLL_S = 0.5


@dataclasses.dataclass
class Member:
    key: str                  # stable across reruns: hash of bindings and seed
    bindings: list[str]
    seed: int
    run_id: int | None = None
    status: str = "PENDING"   # PENDING, RUNNING, COMPLETED, FAILED
    returncode: int | None = None


def parse_grid(text: str) -> tuple[str, list]:
    """``'a.b=[0.15,0.25]'`` → ("a.b", [0.15, 0.25]); values are Python/gin literals (strings
    quoted), a lone value is a one-point axis."""
    name, sep, values = text.partition("=")
    if not sep or not name.strip():
        raise SystemExit(f"sweep: --grid {text!r} must be BINDING=[VALUE, ...]")
    try:
        parsed = ast.literal_eval(values.strip())
    except (ValueError, SyntaxError):
        raise SystemExit(f"sweep: --grid {text!r}: {values.strip()!r} is not a list of literals "
                         "(quote strings: 'a.b=[\"x\",\"y\"]')") from None
    parsed = list(parsed) if isinstance(parsed, (list, tuple)) else [parsed]
    if not parsed:
        raise SystemExit(f"sweep: --grid {text!r} has no values")
    return name.strip(), parsed


def _binding(name: str, value) -> str:
    return f"{name}={value!r}"


def points(grids: list[str], variants: list[str]) -> list[list[str]]:
    """Binding lists, one per point: the grid's product, then the variants."""
    result = []
    if grids:
        axes = [parse_grid(text) for text in grids]
        for values in itertools.product(*(values for _, values in axes)):
            result.append([_binding(name, value) for (name, _), value in zip(axes, values)])
    for text in variants:
        result.append([part.strip() for part in text.split(";") if part.strip()])
    return result or [[]]


def member_key(bindings: list[str], seed: int) -> str:
    digest = hashlib.sha1(json.dumps([bindings, seed]).encode()).hexdigest()[:8]
    return f"seed{seed}-{digest}"


def plan(grids: list[str], variants: list[str], seeds: int, first_seed: int) -> list[Member]:
    if seeds < 1:
        raise SystemExit(f"sweep: --seeds must be ≥ 1, got {seeds}")
    return [Member(member_key(bindings, seed), bindings, seed)
            for bindings in points(grids, variants) for seed in range(first_seed, first_seed + seeds)]


@dataclasses.dataclass
class Sweep:
    command: str
    gin_files: list[str]
    gin_bindings: list[str]
    tags: list[str]
    folder: Path
    members: list[Member]
    own_workdir: bool = True    # bind WORKDIR to the member's folder

    def member_folder(self, member: Member) -> Path:
        return self.folder / member.key

    def argv(self, member: Member, resume: bool = False) -> list[str]:
        """The member's ``run.py`` line (``resume RUN_ID`` to continue an interrupted one)."""
        if resume:
            return [sys.executable, *ENTRY, "resume", str(member.run_id)]
        line = [sys.executable, *ENTRY, self.command]
        for path in self.gin_files:
            line += ["-g", path]
        own = [f"WORKDIR={str(self.member_folder(member))!r}"] if self.own_workdir else []
        for binding in [*self.gin_bindings, *member.bindings, *own]:
            line += ["-b", binding]
        for tag in self.tags:
            line += ["--tag", tag]
        return line + ["with", f"seed={member.seed}"]

    # --- state ----------------------------------------------------------------------------
    def load_state(self) -> None:
        path = self.folder / STATE_FILE
        if not path.is_file():
            return
        saved = {entry["key"]: entry for entry in json.loads(path.read_text(encoding="utf-8"))["members"]}
        for member in self.members:
            if member.key in saved:
                member.run_id = saved[member.key].get("run_id")
                member.status = saved[member.key].get("status", "PENDING")

    def save_state(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        payload = {"command": self.command, "gin_files": self.gin_files, "gin_bindings": self.gin_bindings,
                   "tags": self.tags, "members": [dataclasses.asdict(m) for m in self.members]}
        temporary = self.folder / (STATE_FILE + ".tmp")
        temporary.write_text(json.dumps(payload, indent=1), encoding="utf-8")
        os.replace(temporary, self.folder / STATE_FILE)


def _resume_available() -> bool:
    from lvmae.experiments.commands import command_index
    from lvmae.experiments.commands.cli import _TOOLS
    return "resume" in command_index() or "resume" in _TOOLS


def _run_id_from_log(path: Path) -> int | None:
    try:
        found = STARTED_RUN.findall(path.read_text(encoding="utf-8", errors="replace"))
    except FileNotFoundError:
        return None
    return int(found[-1]) if found else None


def execute(sweep: Sweep, jobs: int) -> int:
    """Runs the members not yet COMPLETED, ``jobs`` at a time; returns how many failed."""
    can_resume = _resume_available()
    todo = [m for m in sweep.members if m.status != COMPLETED]
    done = len(sweep.members) - len(todo)
    if done:
        print(f"sweep: {done} of {len(sweep.members)} members already completed; running {len(todo)}")
    running: dict[str, tuple[Member, subprocess.Popen, Path]] = {}
    failed = 0
    while todo or running:
        while todo and len(running) < jobs:
            member = todo.pop(0)
            resume = can_resume and member.run_id is not None and member.status == "RUNNING"
            folder = sweep.member_folder(member)
            folder.mkdir(parents=True, exist_ok=True)
            log = folder / "log.txt"
            with open(log, "a", encoding="utf-8") as handle:
                handle.write(f"\n$ {shlex.join(sweep.argv(member, resume))}\n")
                handle.flush()
                process = subprocess.Popen(sweep.argv(member, resume), stdout=handle, stderr=subprocess.STDOUT,
                                           stdin=subprocess.DEVNULL, env=program.environment())
            member.status = "RUNNING"
            running[member.key] = (member, process, log)
            sweep.save_state()
            print(f"sweep: {'resuming' if resume else 'started'} {member.key} {' '.join(member.bindings)} "
                  f"(log {log})", flush=True)
        time.sleep(POLL_S)
        for key, (member, process, log) in list(running.items()):
            member.run_id = member.run_id or _run_id_from_log(log)
            if process.poll() is None:
                continue
            del running[key]
            member.returncode = process.returncode
            member.run_id = _run_id_from_log(log) or member.run_id
            member.status = COMPLETED if process.returncode == 0 else "FAILED"
            failed += process.returncode != 0
            sweep.save_state()
            print(f"sweep: {member.key} {member.status} (run {member.run_id}, exit {process.returncode})", flush=True)
    return failed


def emit(sweep: Sweep, path: Path) -> None:
    lines = [shlex.join(sweep.argv(m)) for m in sweep.members if m.status != COMPLETED]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"sweep: {len(lines)} command lines in {path} (one member each; run them in any order)")


def _run_line(argv: list[str]) -> int:
    return subprocess.run(argv, check=False, env=program.environment()).returncode


def submit_slurm(sweep: Sweep, folder: Path, options: list[str]) -> None:
    try:
        import submitit
    except ImportError:
        raise SystemExit("sweep: --slurm-folder needs submitit (pip install submitit), or use --emit FILE "
                         "with your scheduler") from None
    parameters = {}
    for option in options:
        name, sep, value = option.partition("=")
        if not sep:
            raise SystemExit(f"sweep: --slurm {option!r} must be KEY=VALUE")
        try:
            parameters[name] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            parameters[name] = value
    executor = submitit.AutoExecutor(folder=str(folder), cluster=os.environ.get("LVMAE_SUBMITIT_CLUSTER"))
    executor.update_parameters(**parameters)
    members = [m for m in sweep.members if m.status != COMPLETED]
    jobs = executor.map_array(_run_line, [sweep.argv(m) for m in members])
    print(f"sweep: submitted {len(jobs)} members as a job array ({jobs[0].job_id if jobs else '-'}); "
          f"logs under {folder}")


def preflight_members(sweep: Sweep) -> None:
    """Each distinct configuration through preflight (member folders are not inputs)."""
    from lvmae.experiments.commands import command_index
    from lvmae.experiments.commands.cli import PREFLIGHT_STATUS
    from lvmae.experiments.engine.gin_config import GinConfigError
    from lvmae.experiments.engine.preflight import PreflightError, preflight
    info = command_index().get(sweep.command)
    if info is None:
        raise SystemExit(f"sweep: unknown command {sweep.command!r} ({program.name()} --help lists them)")
    for bindings in {tuple(m.bindings) for m in sweep.members}:
        try:
            preflight(sweep.command, sweep.gin_files, [*sweep.gin_bindings, *bindings], module=info.module)
        except (PreflightError, GinConfigError) as error:
            print(f"sweep: member {' '.join(bindings) or '(base)'}: {error}\nNothing was started.", file=sys.stderr)
            raise SystemExit(PREFLIGHT_STATUS) from None


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog=f"{program.name()} sweep", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", help="the command each member runs (pretrain, finetune, ...)")
    parser.add_argument("-g", "--gin", action="append", default=[], help="gin file for every member")
    parser.add_argument("-b", "--bind", action="append", default=[], help="gin binding for every member")
    parser.add_argument("--grid", action="append", default=[], metavar="BINDING=[V,...]",
                        help="an axis of the grid (repeatable: the product is swept)")
    parser.add_argument("--variant", action="append", default=[], metavar="'B=V; B=V'",
                        help="one explicit point (bindings separated by ';'; repeatable)")
    parser.add_argument("--seeds", type=int, default=1, help="seeds per point (default 1)")
    parser.add_argument("--first-seed", type=int, default=1)
    parser.add_argument("--tag", action="append", default=[], required=True,
                        help="tag of every member (the first names the sweep folder)")
    parser.add_argument("--jobs", type=int, default=1, help="members at a time (default 1)")
    parser.add_argument("--workdir", type=Path, default=Path("outputs/sweeps"),
                        help="parent of the sweep folder (default outputs/sweeps)")
    parser.add_argument("--shared-workdir", action="store_true",
                        help="leave WORKDIR as configured (members then rely on their run folders "
                             "WORKDIR/<stage>/<run id>, and inputs derived from WORKDIR keep pointing there)")
    parser.add_argument("--emit", type=Path, default=None, help="write the command lines here instead")
    parser.add_argument("--slurm-folder", type=Path, default=None, help="submit a Slurm job array (submitit)")
    parser.add_argument("--slurm", action="append", default=[], metavar="KEY=VALUE",
                        help="submitit parameter (repeatable)")
    parser.add_argument("--no-preflight", action="store_true", help="skip checking the configurations first")
    args = parser.parse_args(argv)
    if args.jobs < 1:
        parser.error(f"--jobs must be ≥ 1, got {args.jobs}")
    sweep = Sweep(args.command, args.gin, args.bind, list(dict.fromkeys(args.tag)),
                  args.workdir / args.tag[0], plan(args.grid, args.variant, args.seeds, args.first_seed),
                  own_workdir=not args.shared_workdir)
    sweep.load_state()
    if not args.no_preflight:
        preflight_members(sweep)
    if args.emit:
        emit(sweep, args.emit)
        return 0
    if args.slurm_folder:
        submit_slurm(sweep, args.slurm_folder, args.slurm)
        return 0
    sweep.save_state()
    failed = execute(sweep, args.jobs)
    axes = [parse_grid(text)[0] for text in args.grid]
    report = shlex.join([*program.name().split(), "report", "--tag", args.tag[0],
                         *itertools.chain.from_iterable(("--by", axis) for axis in axes)])
    print(f"sweep: {len(sweep.members) - failed} of {len(sweep.members)} members completed "
          f"(state {sweep.folder / STATE_FILE}); table: {report}")
    return 1 if failed else 0
