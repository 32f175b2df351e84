"""The database dies mid-run: for > 30 s and comes back (nothing lost, training not slowed), or
never comes back (bounded exit, every event kept on disk, replayed later)."""
from __future__ import annotations

import datetime
import itertools
import statistics
import time

import pymongo
import pytest

from lvmae.experiments.tracking.provenance import DIFF_ARTIFACT
from tests.tracking_support import Daemon, run_lvmae, start_lvmae

pytestmark = pytest.mark.slow
OUTAGE_S = 33.0             # longer than pymongo's 30 s server selection: the case that loses data
SECONDS_PER_STEP = 0.1
STEPS = 500                 # ≥ 50 s of steps: ~20 before the outage, ~330 during, the rest after
KILL_AFTER_START_S = 2.0


def _utcnow() -> datetime.datetime:
    # Sacred stamps metric points with naive UTC datetimes
    return datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)


def _wait_for(predicate, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


def test_outage_longer_than_30s_loses_no_metric_and_does_not_stall_training(tmp_path):
    daemon = Daemon(tmp_path / "db").start()
    process = None
    try:
        client = pymongo.MongoClient(daemon.url, serverSelectionTimeoutMS=2000)
        process = start_lvmae(["tracking_check", "-b", f"tracking_check_loop.steps={STEPS}",
                               "-b", f"tracking_check_loop.seconds_per_step={SECONDS_PER_STEP}",
                               "--beat-interval=1"], tmp_path / "runs", LVMAE_MONGO_URL=daemon.url)
        # The run document is written synchronously just before the first step (metrics come
        # later, from the writer thread, and may lag on a busy disk).
        _wait_for(lambda: client.lvmae.runs.count_documents({}) > 0 or process.poll() is not None,
                  90, "the run document")
        time.sleep(KILL_AFTER_START_S)
        assert process.poll() is None, process.communicate()[1][-3000:]
        killed_at = _utcnow()
        daemon.kill()
        time.sleep(OUTAGE_S)
        assert process.poll() is None, "the run ended during the outage: make it longer"
        restarted_at = _utcnow()
        daemon.start()
        _, stderr = process.communicate(timeout=120)
        assert process.returncode == 0, stderr[-3000:]

        database = pymongo.MongoClient(daemon.url, serverSelectionTimeoutMS=5000).lvmae
        run = database.runs.find_one()
        # A checkout with uncommitted edits also attaches its diff (provenance.DIFF_ARTIFACT).
        attached = [a["name"] for a in run["artifacts"] if a["name"] != DIFF_ARTIFACT]
        assert run["status"] == "COMPLETED" and attached == ["weights.png", "operative_config.gin"]
        metrics = {m["name"]: m for m in database.metrics.find({"run_id": run["_id"]})}
        for name in ("train/loss", "train/step_ms"):
            assert sorted(set(metrics[name]["steps"])) == list(range(1, STEPS + 1)), name

        points = sorted(zip(metrics["train/step_ms"]["timestamps"], metrics["train/step_ms"]["values"]))
        before = [ms for stamp, ms in points if stamp < killed_at]
        during = [(stamp, ms) for stamp, ms in points if killed_at < stamp < restarted_at]
        assert len(before) >= 5 and len(during) >= 0.5 * OUTAGE_S / SECONDS_PER_STEP   # it kept stepping
        assert statistics.median(ms for _, ms in during) < 1.5 * statistics.median(before)
        stamps = [stamp for stamp, _ in during]
        longest_gap_s = max((b - a).total_seconds() for a, b in itertools.pairwise(stamps))
        assert longest_gap_s < 1.0, f"a step waited {longest_gap_s:.1f} s during the outage"
        print(f"outage {OUTAGE_S:.0f} s: median step {statistics.median(before):.1f} ms before "
              f"({len(before)} steps), {statistics.median(ms for _, ms in during):.1f} ms during "
              f"({len(during)} steps); longest gap during {longest_gap_s * 1000:.0f} ms")
    finally:
        if process and process.poll() is None:
            process.kill()
        daemon.stop()


def test_database_that_never_returns_bounds_the_exit_and_keeps_every_event(tmp_path):
    daemon = Daemon(tmp_path / "db").start()
    runs = tmp_path / "runs"
    try:
        process = start_lvmae(["tracking_check", "-b", "tracking_check_loop.steps=40",
                               "-b", "tracking_check_loop.seconds_per_step=0.1", "--beat-interval=1"],
                              runs, LVMAE_MONGO_URL=daemon.url, LVMAE_FLUSH_TIMEOUT_S="3")
        client = pymongo.MongoClient(daemon.url, serverSelectionTimeoutMS=2000)
        _wait_for(lambda: client.lvmae.runs.count_documents({}) > 0 or process.poll() is not None,
                  90, "the run document")
        daemon.kill()
        killed = time.monotonic()
        _, stderr = process.communicate(timeout=120)
        assert time.monotonic() - killed < 40          # 4 s of steps + a 3 s flush bound + exit
        assert "python run.py db replay" in stderr, stderr[-3000:]
        dumps = list((runs / "unflushed").glob("run-1-*.pickle"))
        assert len(dumps) == 1

        daemon.start()
        replayed = run_lvmae(["db", "replay", str(dumps[0])], runs, timeout=60, LVMAE_MONGO_URL=daemon.url)
        assert replayed.returncode == 0, replayed.stderr[-3000:]
        database = pymongo.MongoClient(daemon.url, serverSelectionTimeoutMS=5000).lvmae
        run = database.runs.find_one({"_id": 1})
        assert run["status"] == "COMPLETED"
        assert "operative_config.gin" in [a["name"] for a in run["artifacts"]]
        steps = database.metrics.find_one({"run_id": 1, "name": "train/loss"})["steps"]
        assert sorted(set(steps)) == list(range(1, 41))
        assert not list((runs / "unflushed").glob("*.pickle"))     # replayed files are renamed
    finally:
        daemon.stop()
