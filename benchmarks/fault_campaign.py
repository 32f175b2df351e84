"""Fault campaign: does lvmae keep its promises about runs when things break? Four parts, all
through ``run.py`` as a user types it, recorded in a local SecantusDB the campaign starts in a
temporary runs folder (nothing of yours is touched):

1. ``kill``: a deterministic tiny CPU pre-training run, uninterrupted; then N times the same
   run killed with SIGKILL at a random step (read from the database) and continued with
   ``run.py resume RUN_ID``. Each resumed run's final weights must be ``torch.equal`` to the
   uninterrupted run's, its ``train/loss`` series hold every step once, and its record be
   COMPLETED (the dead run is marked INTERRUPTED before the resume starts).
2. ``db``: two concurrent runs; the database is killed (SIGKILL) for ``--outage-s`` seconds and
   restarted with the documented ``run.py db start``. Every metric point must arrive exactly
   once, with nothing left to replay, and each run must print one line when the outage starts
   and one when it ends.
3. ``concurrent``: four pre-training runs at once; each completes its steps in its own run.
4. ``sweep``: ``run.py sweep`` over a 3-value grid × 3 seeds (2 at a time); every member
   COMPLETED and trained to its step count; ``report --tag`` shows 3 rows of n=3.

Also times the preflight errors of the issue (``steps='five'``, ``steps=-5``, a missing
manifest, an unset macro), ``run.py list`` and ``run.py --help``.

    nice -n 10 .venv/bin/python benchmarks/fault_campaign.py --out outputs/fault_campaign.json
    nice -n 10 .venv/bin/python benchmarks/fault_campaign.py --parts kill --kills 3

Exit status 0 when every check passed; the JSON holds the figures.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TINY = "gin/experiments/tiny_cpu.gin"
STARTED = "Started run with ID"
POLL_S = 0.3
STALE_S = 2.0     # heartbeat age after which the campaign's `db status` marks a killed run


class Campaign:
    def __init__(self, folder: Path, seed: int):
        self.folder = folder
        self.runs = folder / "runs"
        self.random = random.Random(seed)
        self.env = {**os.environ, "LVMAE_RUNS_DIR": str(self.runs), "PYTHONWARNINGS": "ignore"}
        for name in ("LVMAE_MONGO_URL", "LVMAE_OBSERVER", "LVMAE_DB_FALLBACK", "LVMAE_MONGO_DB"):
            self.env.pop(name, None)
        self.failures: list[str] = []
        self._logs = 0

    # --- processes ------------------------------------------------------------------------
    def run_py(self, args: list[str], timeout: float = 900, env_extra: dict | None = None
               ) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, str(ROOT / "run.py"), *args], cwd=ROOT,
                              env={**self.env, **(env_extra or {})}, capture_output=True, text=True, timeout=timeout)

    def start(self, args: list[str]) -> tuple[subprocess.Popen, Path]:
        self._logs += 1
        log = self.folder / f"process-{self._logs:03d}.log"
        handle = open(log, "w", encoding="utf-8")     # noqa: SIM115  (closed by the child's exit)
        process = subprocess.Popen([sys.executable, str(ROOT / "run.py"), *args], cwd=ROOT, env=self.env,
                                   stdout=handle, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        return process, log

    @staticmethod
    def run_id(log: Path, process: subprocess.Popen, timeout: float = 600) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = log.read_text(encoding="utf-8", errors="replace")
            if STARTED in text:
                return int(text.split(STARTED, 1)[1].split()[0].strip('"'))
            if process.poll() is not None:
                raise RuntimeError(f"run ended before it started ({log}):\n{text[-2000:]}")
            time.sleep(POLL_S)
        raise RuntimeError(f"no run id within {timeout} s ({log})")

    # --- database -------------------------------------------------------------------------
    def database(self):
        import pymongo

        from lvmae.experiments.tracking import local_db
        url = local_db.ensure_server(self.runs)
        return pymongo.MongoClient(url, serverSelectionTimeoutMS=5000).lvmae

    def steps_logged(self, run_id: int, name: str = "train/loss") -> list[int]:
        document = self.database().metrics.find_one({"run_id": run_id, "name": name}) or {}
        return list(document.get("steps", []))

    def status(self, run_id: int) -> str | None:
        document = self.database().runs.find_one({"_id": run_id}, {"status": 1})
        return document and document["status"]

    def check(self, condition: bool, what: str) -> bool:
        if not condition:
            self.failures.append(what)
            print(f"  FAILED: {what}", flush=True)
        return condition


def final_checkpoint(workdir: Path) -> Path:
    """The newest checkpoint under ``workdir`` (any layout; a published link is skipped)."""
    found = [p for p in workdir.rglob("last.pt") if not p.is_symlink()]
    if not found:
        raise RuntimeError(f"no last.pt under {workdir}")
    return max(found, key=lambda p: p.stat().st_mtime)


def final_weights(workdir: Path) -> dict:
    import torch
    return torch.load(final_checkpoint(workdir), map_location="cpu", weights_only=False)["model"]


def weights_equal(a: dict, b: dict) -> bool:
    import torch
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def pretrain_args(workdir: Path, steps: int, seed: int, *extra: str) -> list[str]:
    return ["pretrain", "-g", TINY, "-b", f"pretrain_loop.steps={steps}", "-b", "pretrain_loop.log_every=1",
            "-b", "pretrain_loop.checkpoint_every=1", "-b", "pretrain_loop.deterministic=True",
            "-b", f"WORKDIR={str(workdir)!r}", "--beat-interval=1", *extra, "with", f"seed={seed}"]


# --- parts --------------------------------------------------------------------------------------
def part_kill(c: Campaign, kills: int, steps: int) -> dict:
    print(f"[kill] uninterrupted run ({steps} steps)", flush=True)
    started = time.monotonic()
    base = c.run_py(pretrain_args(c.folder / "kill-base", steps, seed=7))
    baseline_s = time.monotonic() - started
    if not c.check(base.returncode == 0, f"uninterrupted run failed: {base.stderr[-1500:]}"):
        return {}
    reference = final_weights(c.folder / "kill-base")
    trials = []
    for trial in range(kills):
        target = c.random.randint(2, steps - 2)
        workdir = c.folder / f"kill-{trial}"
        process, log = c.start(pretrain_args(workdir, steps, seed=7))
        run_id = c.run_id(log, process)
        while process.poll() is None and max(c.steps_logged(run_id), default=0) < target:
            time.sleep(POLL_S)
        killed_at = max(c.steps_logged(run_id), default=0)
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)
        process.wait()
        if not c.check(process.returncode == -signal.SIGKILL, f"trial {trial}: the run ended before the kill"):
            continue
        time.sleep(STALE_S + 1)
        c.run_py(["db", "status"], env_extra={"LVMAE_STALE_AFTER_S": str(STALE_S)})   # marks dead runs
        status_after_kill = c.status(run_id)
        c.check(status_after_kill == "INTERRUPTED", f"trial {trial}: killed run {run_id} is {status_after_kill}")
        resumed = c.run_py(["resume", str(run_id)], timeout=1800)
        ok = c.check(resumed.returncode == 0, f"trial {trial}: resume failed: {resumed.stderr[-1500:]}")
        equal = ok and weights_equal(final_weights(workdir), reference)
        logged = c.steps_logged(run_id)
        c.check(equal, f"trial {trial}: resumed weights differ from the uninterrupted run's")
        c.check(logged == list(range(1, steps + 1)), f"trial {trial}: train/loss steps {logged[:5]}... "
                                                     f"({len(logged)}) are not 1..{steps} once each")
        c.check(c.status(run_id) == "COMPLETED", f"trial {trial}: run {run_id} is {c.status(run_id)}")
        trials.append({"run": run_id, "target_step": target, "killed_at_logged_step": killed_at,
                       "status_after_kill": status_after_kill, "weights_equal": equal,
                       "steps_once_each": logged == list(range(1, steps + 1))})
        print(f"[kill] trial {trial}: killed at step ~{killed_at} (target {target}); resumed weights "
              f"{'equal' if equal else 'DIFFER'}", flush=True)
    return {"steps": steps, "uninterrupted_s": round(baseline_s, 1), "trials": trials,
            "equal": sum(t["weights_equal"] for t in trials), "of": kills}


def part_db(c: Campaign, outage_s: float, steps: int, seconds_per_step: float) -> dict:
    from lvmae.experiments.tracking import local_db
    print(f"[db] 2 runs, database killed for {outage_s:.0f} s", flush=True)
    c.database()
    port_before = local_db.read_state(c.runs)["port"]
    started = [c.start(["tracking_check", "-b", f"tracking_check_loop.steps={steps}",
                        "-b", f"tracking_check_loop.seconds_per_step={seconds_per_step}",
                        "-b", f"tracking_check_loop.workdir={str(c.folder / f'db-{i}')!r}", "--beat-interval=1"])
               for i in range(2)]
    ids = [c.run_id(log, process) for process, log in started]
    time.sleep(5)
    os.kill(local_db.read_state(c.runs)["pid"], signal.SIGKILL)
    killed = time.monotonic()
    time.sleep(outage_s)
    alive = [process.poll() is None for process, _ in started]
    restart = c.run_py(["db", "start"])
    restarted_s = time.monotonic() - killed
    c.check(restart.returncode == 0, f"db start failed: {restart.stderr[-800:]}")
    c.check(all(alive), "a run ended during the outage: make the runs longer")
    for process, _ in started:
        process.wait(timeout=1800)
    port_after = local_db.read_state(c.runs)["port"]
    result = {"outage_s": round(restarted_s, 1), "port_kept": port_before == port_after, "runs": []}
    c.check(port_before == port_after, f"port changed {port_before} → {port_after}")
    unflushed = list((c.runs / "unflushed").glob("*.pickle")) if (c.runs / "unflushed").exists() else []
    c.check(not unflushed, f"events left to replay: {unflushed}")
    for run_id, (process, log) in zip(ids, started):
        logged = c.steps_logged(run_id)
        lines = [line for line in log.read_text().splitlines() if line.startswith("lvmae tracking:")]
        expected = list(range(1, steps + 1))
        lost = len(set(expected) - set(logged))
        duplicated = len(logged) - len(set(logged))
        c.check(process.returncode == 0 and c.status(run_id) == "COMPLETED", f"db run {run_id} did not complete")
        c.check(lost == 0 and duplicated == 0, f"db run {run_id}: {lost} points lost, {duplicated} duplicated")
        c.check(len(lines) == 2 and "does not answer" in lines[0] and "is back" in lines[-1],
                f"db run {run_id}: outage lines {lines}")
        result["runs"].append({"run": run_id, "points": len(logged), "lost": lost, "duplicated": duplicated,
                               "outage_lines": lines})
    result["unflushed_files"] = len(unflushed)
    return result


def part_concurrent(c: Campaign, runs: int, steps: int) -> dict:
    print(f"[concurrent] {runs} pre-training runs at once", flush=True)
    started = [c.start(pretrain_args(c.folder / f"concurrent-{i}", steps, seed=100 + i)) for i in range(runs)]
    ids = [c.run_id(log, process) for process, log in started]
    for process, _ in started:
        process.wait(timeout=3600)
    completed = 0
    for run_id, (process, log) in zip(ids, started):
        ok = (process.returncode == 0 and c.status(run_id) == "COMPLETED"
              and c.steps_logged(run_id) == list(range(1, steps + 1)))
        completed += ok
        c.check(ok, f"concurrent run {run_id} (log {log}) did not complete all {steps} steps")
    c.check(len(set(ids)) == runs, f"run ids not distinct: {ids}")
    return {"runs": runs, "completed": completed, "ids": ids}


def part_sweep(c: Campaign, steps: int) -> dict:
    print("[sweep] 3 × 3 seeds", flush=True)
    tag = "campaign-sweep"
    result = c.run_py(["sweep", "pretrain", "-g", TINY, "-b", f"pretrain_loop.steps={steps}",
                       "-b", "pretrain_loop.log_every=1",
                       "--grid", "masking.decoder.random.budget=[0.15,0.25,0.5]", "--seeds", "3", "--tag", tag,
                       "--jobs", "2", "--workdir", str(c.folder / "sweeps")], timeout=7200)
    c.check(result.returncode == 0, f"sweep failed: {result.stdout[-1500:]} {result.stderr[-1500:]}")
    import torch
    state = json.loads((c.folder / "sweeps" / tag / "sweep.json").read_text())
    trained = 0
    for member in state["members"]:
        logged = c.steps_logged(member["run_id"]) if member["run_id"] else []
        checkpoint_step = torch.load(final_checkpoint(c.folder / "sweeps" / tag / member["key"]),
                                     map_location="cpu", weights_only=False)["step"]
        ok = member["status"] == "COMPLETED" and logged == list(range(1, steps + 1)) and checkpoint_step == steps
        trained += bool(ok)
        c.check(bool(ok), f"sweep member {member['key']} (run {member['run_id']}) did not train to step {steps}")
    report = c.run_py(["report", "--tag", tag, "--by", "masking.decoder.random.budget", "--metric", "train/loss",
                       "--plot", str(c.folder / "sweep-report.png")])
    rows = [line for line in report.stdout.splitlines() if line.startswith(("0.15", "0.25", "0.5"))]
    c.check(len(rows) == 3 and all("(n=3)" in row for row in rows), f"report rows: {report.stdout[-1500:]}")
    return {"members": len(state["members"]), "trained_to_steps": trained, "report": rows}


def part_errors(c: Campaign) -> dict:
    print("[errors] preflight error times", flush=True)
    env = {**c.env, "LVMAE_OBSERVER": "file"}
    cases = {"steps='five'": ["pretrain", "-g", TINY, "-b", "pretrain_loop.steps='five'"],
             "steps=-5": ["pretrain", "-g", TINY, "-b", "pretrain_loop.steps=-5"],
             "missing manifest": ["pretrain", "-g", TINY, "-g", "gin/data/manifest.gin",
                                  "-b", "MANIFEST='data/none/manifest.yaml'"],
             "unset macro": ["pretrain", "-g", TINY, "-g", "gin/data/manifest.gin"],
             "list": ["list"], "--help": ["--help"]}
    started = time.monotonic()
    subprocess.run([sys.executable, "-c", "import torch, sacred, gin"], env=env, check=True, timeout=300)
    # The floor under the same load: a Python that only imports torch, sacred and gin.
    times = {"floor: import torch, sacred, gin": {"seconds": round(time.monotonic() - started, 2)}}
    for name, args in cases.items():
        started = time.monotonic()
        result = subprocess.run([sys.executable, str(ROOT / "run.py"), *args], cwd=ROOT, env=env,
                                capture_output=True, text=True, timeout=300)
        times[name] = {"seconds": round(time.monotonic() - started, 2), "exit": result.returncode,
                       "message": (result.stderr.strip().splitlines() or [""])[0][:200]}
        expected_exit = 0 if name in ("list", "--help") else 2
        c.check(result.returncode == expected_exit, f"{name}: exit {result.returncode}, expected {expected_exit}")
    left = [p.name for p in c.runs.iterdir() if p.name.isdigit()] if c.runs.exists() else []
    c.check(not left, f"an error left runs behind: {left}")
    return times


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--parts", default="errors,kill,db,concurrent,sweep")
    parser.add_argument("--kills", type=int, default=10)
    parser.add_argument("--steps", type=int, default=12, help="steps of each tiny pre-training run")
    parser.add_argument("--outage-s", type=float, default=60.0)
    parser.add_argument("--db-steps", type=int, default=900, help="steps of each run during the outage")
    parser.add_argument("--db-seconds-per-step", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=0, help="draws the kill steps")
    parser.add_argument("--out", type=Path, default=None, help="JSON of the figures")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = parser.parse_args(argv)
    folder = Path(tempfile.mkdtemp(prefix="lvmae-faults-"))
    campaign = Campaign(folder, args.seed)
    parts = [p.strip() for p in args.parts.split(",") if p.strip()]
    figures: dict = {"folder": str(folder)}
    started = time.monotonic()
    try:
        for part in parts:
            if part == "errors":
                figures["errors"] = part_errors(campaign)
            elif part == "kill":
                figures["kill"] = part_kill(campaign, args.kills, args.steps)
            elif part == "db":
                figures["db"] = part_db(campaign, args.outage_s, args.db_steps, args.db_seconds_per_step)
            elif part == "concurrent":
                figures["concurrent"] = part_concurrent(campaign, 4, args.steps)
            elif part == "sweep":
                figures["sweep"] = part_sweep(campaign, args.steps)
            else:
                parser.error(f"unknown part {part!r}")
    finally:
        from lvmae.experiments.tracking import local_db
        local_db.stop_server(campaign.runs)
        figures["failures"] = campaign.failures
        figures["wall_s"] = round(time.monotonic() - started, 1)
        text = json.dumps(figures, indent=1)
        print(text)
        if args.out:
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(text)
        if not args.keep and not campaign.failures:
            import shutil
            shutil.rmtree(folder, ignore_errors=True)
    return 1 if campaign.failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
