"""Dead runs are marked INTERRUPTED with a reason; the local database keeps its port across
restarts, so a live run reconnects by itself (one line when the outage starts, one when it
ends, no point lost, nothing left to replay)."""
from __future__ import annotations

import datetime
import json
import os
import signal
import time

import pymongo
import pytest

from lvmae.experiments.reporting.report import left_out
from lvmae.experiments.tracking import dead_runs, local_db
from tests.tracking_support import Daemon, run_lvmae, start_lvmae

NOW = datetime.datetime(2026, 1, 1, 12, 0, 0)
STALE_S = 60.0


@pytest.fixture
def database(tmp_path):
    daemon = Daemon(tmp_path / "db").start()
    client = pymongo.MongoClient(daemon.url, serverSelectionTimeoutMS=5000)
    yield client.lvmae
    client.close()
    daemon.stop()


def _run(_id: int, status: str, beat_age_s: float, tags=("t",)) -> dict:
    return {"_id": _id, "status": status, "heartbeat": NOW - datetime.timedelta(seconds=beat_age_s),
            "meta": {"tags": list(tags)}}


def test_only_running_runs_with_a_stale_heartbeat_are_marked_with_a_reason(database):
    database.runs.insert_many([_run(1, "RUNNING", 2 * STALE_S), _run(2, "RUNNING", STALE_S / 2),
                               _run(3, "COMPLETED", 10 * STALE_S)])
    assert dead_runs.mark_in_database(database, STALE_S, now=NOW) == [1]
    statuses = {d["_id"]: d["status"] for d in database.runs.find()}
    assert statuses == {1: dead_runs.DEAD_STATUS, 2: "RUNNING", 3: "COMPLETED"}
    dead = database.runs.find_one({"_id": 1})
    assert "no heartbeat since" in dead["fail_trace"][0] and "resume 1" in dead["fail_trace"][0]
    assert dead["stop_time"] == dead["heartbeat"]
    assert dead_runs.mark_in_database(database, STALE_S, now=NOW) == []     # once


def test_report_counts_the_runs_it_leaves_out(database):
    database.runs.insert_many([_run(1, "COMPLETED", 0), _run(2, "INTERRUPTED", 0), _run(3, "RUNNING", 0),
                               _run(4, "FAILED", 0, tags=("other",))])
    assert left_out(database, ["t"], [], None, "COMPLETED") == {"INTERRUPTED": 1, "RUNNING": 1}
    assert left_out(database, ["t"], [], None, None) == {}


def test_file_store_runs_are_marked_too(tmp_path):
    for _id, status, age in ((1, "RUNNING", 2 * STALE_S), (2, "RUNNING", 0), (3, "FAILED", 5 * STALE_S)):
        (tmp_path / str(_id)).mkdir()
        beat = (NOW - datetime.timedelta(seconds=age)).isoformat()
        (tmp_path / str(_id) / "run.json").write_text(json.dumps({"status": status, "heartbeat": beat}))
    assert dead_runs.mark_in_folder(tmp_path, STALE_S, now=NOW) == ["1"]
    entry = json.loads((tmp_path / "1" / "run.json").read_text())
    assert entry["status"] == dead_runs.DEAD_STATUS and "resume 1" in entry["fail_trace"][0]
    assert json.loads((tmp_path / "2" / "run.json").read_text())["status"] == "RUNNING"


def test_local_server_keeps_its_port_across_stop_kill_and_start(tmp_path):
    runs = tmp_path / "runs"
    try:
        first = local_db.ensure_server(runs)
        port = local_db.read_state(runs)["port"]
        local_db.stop_server(runs)
        assert local_db.stored_port(runs) == port
        assert local_db.ensure_server(runs) == first
        os.kill(local_db.read_state(runs)["pid"], signal.SIGKILL)      # a crash, not a stop
        time.sleep(0.5)
        result = run_lvmae(["db", "start"], runs, timeout=120)
        assert result.returncode == 0, result.stderr
        assert f":{port}/" in result.stdout
    finally:
        local_db.stop_server(runs)


@pytest.mark.slow
def test_a_live_run_reconnects_after_a_restart_and_says_when_the_outage_starts_and_ends(tmp_path):
    runs = tmp_path / "runs"
    steps, seconds_per_step, outage_s = 120, 0.1, 8.0
    process = None
    try:
        url = local_db.ensure_server(runs)
        client = pymongo.MongoClient(url, serverSelectionTimeoutMS=5000)
        process = start_lvmae(["tracking_check", "-b", f"tracking_check_loop.steps={steps}",
                               "-b", f"tracking_check_loop.seconds_per_step={seconds_per_step}",
                               "--beat-interval=1"], runs)
        deadline = time.monotonic() + 120
        while client.lvmae.runs.count_documents({}) == 0 and process.poll() is None:
            assert time.monotonic() < deadline, "no run document"
            time.sleep(0.2)
        time.sleep(1.5)
        os.kill(local_db.read_state(runs)["pid"], signal.SIGKILL)
        time.sleep(outage_s)
        assert process.poll() is None, "the run ended during the outage: make it longer"
        restarted = run_lvmae(["db", "start"], runs, timeout=120)       # the documented restart
        assert restarted.returncode == 0, restarted.stderr
        _, stderr = process.communicate(timeout=240)
        assert process.returncode == 0, stderr[-3000:]
        outage_lines = [line for line in stderr.splitlines() if line.startswith("lvmae tracking:")]
        assert len(outage_lines) == 2, stderr[-3000:]
        assert "does not answer" in outage_lines[0] and "is back after" in outage_lines[1]
        database = pymongo.MongoClient(url, serverSelectionTimeoutMS=5000).lvmae
        run = database.runs.find_one()
        assert run["status"] == "COMPLETED"
        loss = database.metrics.find_one({"run_id": run["_id"], "name": "train/loss"})
        assert loss["steps"] == list(range(1, steps + 1))       # every point once: no loss, no replay
        assert not (runs / "unflushed").exists() or not list((runs / "unflushed").iterdir())
    finally:
        if process and process.poll() is None:
            process.kill()
        local_db.stop_server(runs)


def test_starting_a_run_marks_a_dead_one(tmp_path):
    runs = tmp_path / "runs"
    (runs / "1").mkdir(parents=True)
    stale = (datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)
             - datetime.timedelta(seconds=2 * STALE_S)).isoformat()
    (runs / "1" / "run.json").write_text(json.dumps({"status": "RUNNING", "heartbeat": stale}))
    result = run_lvmae(["tracking_check", "-b", "tracking_check_loop.steps=1"], runs, LVMAE_OBSERVER="file",
                       LVMAE_STALE_AFTER_S=str(STALE_S))
    assert result.returncode == 0, result.stderr[-2000:]
    assert "marked 1 run(s) INTERRUPTED" in result.stderr
    assert json.loads((runs / "1" / "run.json").read_text())["status"] == "INTERRUPTED"
    assert json.loads((runs / "2" / "run.json").read_text())["status"] == "COMPLETED"
