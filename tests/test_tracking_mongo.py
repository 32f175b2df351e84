"""Runs through run.py into a real MongoDB-wire server (SecantusDB): the default on-demand local
server, what a run stores (runs, metrics, GridFS), resume into the same run, the report over
seeds, credentials that never reach the database, and stopping the server."""
from __future__ import annotations

import datetime
import re

import bson
import gridfs
import pymongo
import pytest

from lvmae.experiments.commands.experiment import _has_git_head
from lvmae.experiments.tracking import local_db
from tests.tracking_support import Daemon, listening_addresses, run_lvmae

pytestmark = pytest.mark.slow
TINY = "gin/experiments/tiny_cpu.gin"
MAX_RUN_DOCUMENT_BYTES = 2**20      # far below MongoDB's 16 MB: output is filtered, files are in GridFS


def _client(url: str) -> pymongo.MongoClient:
    return pymongo.MongoClient(url, serverSelectionTimeoutMS=5000)


@pytest.fixture(scope="module")
def local_run(tmp_path_factory):
    """A tiny pre-training run on the default path: no LVMAE_MONGO_URL → the local server."""
    base = tmp_path_factory.mktemp("local")
    runs = base / "runs"
    result = run_lvmae(["pretrain", "-g", TINY, "-b", f"dataset.synthetic_motion.root='{base / 'data'}'",
                        "-b", f"WORKDIR='{base / 'work'}'", "-b", "pretrain_loop.steps=6",
                        "-b", "pretrain_loop.log_every=2", "--tag", "ci", "--tag", "tiny"], runs)
    state = local_db.read_state(runs)
    yield runs, state, result
    run_lvmae(["db", "stop"], runs, timeout=60)


def test_run_documents_metrics_and_files_are_in_the_local_database(local_run):
    runs, state, result = local_run
    assert result.returncode == 0, result.stderr[-3000:]
    assert state is not None and state["storage_path"] == str(runs / "db" / "data")
    assert listening_addresses(state["port"]) == {"0100007F"}          # 127.0.0.1 only
    database = _client(state["url"]).lvmae
    run = database.runs.find_one({"command": "pretrain"})
    assert run["status"] == "COMPLETED"
    assert run["config"]["gin"]["bindings"]["masking"]["encoder"]["tube"]["keep_ratio"] == 0.1
    assert database.runs.count_documents({"config.gin.bindings.experiments.pretrain_loop.steps": 6}) == 1
    assert run["meta"]["tags"] == ["ci", "tiny"] and run["omniboard"]["tags"] == ["ci", "tiny"]
    # the path of the run's own folder (WORKDIR/pretrain/<run id>/last.pt), not the bytes
    assert run["info"]["checkpoint"].endswith(f"pretrain/{run['_id']}/last.pt")
    assert run["host"]["hostname"]
    if _has_git_head():                         # an unpacked archive has no git state to record
        assert run["experiment"]["repositories"][0]["commit"]
    assert "\r" not in run["captured_out"] and len(bson.encode(run)) < MAX_RUN_DOCUMENT_BYTES

    metrics = {m["name"]: m for m in database.metrics.find({"run_id": run["_id"]})}
    assert set(metrics) >= {"train/loss", "train/lr", "train/grad_norm", "eff/clips_per_s", "eff/data_wait_fraction"}
    for name, metric in metrics.items():     # health checks run every 100 steps, and at the first and last
        steps = [1, 6] if name.startswith("health/") else [1, 2, 4, 6]
        assert metric["steps"] == steps and len(metric["values"]) == len(steps), name

    files = gridfs.GridFS(database)
    artifacts = {a["name"]: files.get(a["file_id"]).read() for a in run["artifacts"]}
    pictures = [name for name in artifacts if name.startswith("reconstruction_")]
    assert pictures and all(artifacts[name].startswith(b"\x89PNG") for name in pictures)
    assert b"tube.keep_ratio = 0.1" in artifacts["operative_config.gin"]
    assert files.find_one({"filename": f"artifact://runs/{run['_id']}/operative_config.gin"}) is not None


def test_resume_writes_into_the_same_run(local_run):
    runs, state, _ = local_run
    first = run_lvmae(["tracking_check", "-b", "tracking_check_loop.steps=3", "--tag", "resume"], runs)
    assert first.returncode == 0, first.stderr[-3000:]
    run_id = int(re.search(r'Started run with ID "(\d+)"', first.stderr).group(1))
    second = run_lvmae(["tracking_check", "-b", "tracking_check_loop.steps=3", "--resume-run", str(run_id)], runs)
    assert second.returncode == 0, second.stderr[-3000:]
    assert f'Started run with ID "{run_id}"' in second.stderr
    database = _client(state["url"]).lvmae
    run = database.runs.find_one({"_id": run_id})
    assert run["status"] == "COMPLETED" and len(run["meta"]["resumes"]) == 1
    assert [a["name"] for a in run["artifacts"]].count("weights.png") == 2
    assert run["captured_out"].count("tracking check: final loss") == 2
    assert run["omniboard"]["tags"] == ["resume"]
    assert database.metrics.find_one({"run_id": run_id, "name": "train/loss"})["steps"] == [1, 2, 3, 1, 2, 3]
    missing = run_lvmae(["tracking_check", "--resume-run", "9999"], runs)
    assert missing.returncode == 2 and "cannot resume run 9999: no run 9999 in the database" in missing.stderr


def _points(first: int, last: int) -> dict:
    steps = list(range(first, last + 1))
    return {"steps": steps, "values": [float(s) for s in steps], "timestamps": [datetime.datetime(2026, 1, 1)] * len(steps)}


def test_a_resumed_run_drops_the_points_past_its_checkpoint_and_its_old_failure(tmp_path):
    """The observer's side of a resume, deterministic: a run stored steps 1–12 and FAILED
    (checkpoint at 10); resumed into the same record, it logs 11–20 again."""
    from lvmae.experiments.tracking import observers
    daemon = Daemon(tmp_path / "db").start()
    try:
        ex_info = {"name": "t", "base_dir": str(tmp_path), "sources": [], "dependencies": [], "repositories": []}
        now = datetime.datetime(2026, 1, 1)
        first = observers.mongo_observer(daemon.url)
        run_id = first.started_event(ex_info, "pretrain", {}, now, {}, {}, None)
        first.log_metrics({"train/loss": _points(1, 12), "train/lr": _points(1, 12)}, {})
        first.failed_event(now, ["killed"])
        resumed = observers.mongo_observer(daemon.url, resume_run=run_id)
        resumed.started_event(ex_info, "pretrain", {}, now, {}, {}, None)
        resumed.truncate_metrics(after_step=10)          # what the engine does when it resumes
        resumed.log_metrics({"train/loss": _points(11, 20), "train/lr": _points(11, 20)}, {})
        resumed.completed_event(now, None)
        database = _client(daemon.url).lvmae
        for metric in database.metrics.find({"run_id": run_id}):
            assert metric["steps"] == list(range(1, 21)) and metric["values"] == [float(s) for s in range(1, 21)]
        run = database.runs.find_one({"_id": run_id})
        assert run["status"] == "COMPLETED" and "fail_trace" not in run
    finally:
        daemon.stop()


def test_kill_and_resume_stores_each_step_once(local_run, tmp_path):
    """A run dies after step 3 (checkpoint at 2, like kill -9); ``run.py resume`` continues it:
    every metric holds each step once (steps 3 were stored twice before), the completed run
    keeps no stale failure, and the crash-test hook is not replayed."""
    runs, state, _ = local_run
    small = ["CLIP_FRAMES = 4", "IMAGE_SIZE = 16", f"WORKDIR = '{tmp_path / 'work'}'",
             f"dataset.synthetic_motion.root = '{tmp_path / 'data'}'", "dataset.synthetic_motion.square = 4",
             "dataset.synthetic_motion.train_samples = 16", "dataset.synthetic_motion.val_samples = 4",
             "dataset.synthetic_motion.samples_per_shard = 8", "pretrain_loop.batch_size = 2",
             "pretrain_loop.steps = 5", "pretrain_loop.log_every = 1", "pretrain_loop.checkpoint_every = 2",
             "pretrain_loop.shuffle_buffer = 4", "pretrain_loop.exit_after_step = 3"]
    # heartbeats every 0.1 s send the points of step 3 before the process dies (with Sacred's
    # 10 s beat only the checkpoint's heartbeat would)
    crashed = run_lvmae(["pretrain", "-g", TINY, *[a for b in small for a in ("-b", b)], "--beat-interval=0.1"], runs)
    assert crashed.returncode == 137, crashed.stderr[-3000:]
    run_id = int(re.search(r'Started run with ID "(\d+)"', crashed.stderr).group(1))
    resumed = run_lvmae(["resume", str(run_id)], runs, LVMAE_STALE_AFTER_S="0.5")   # marked INTERRUPTED first
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "exit_after_step" not in resumed.stdout.splitlines()[0]
    database = _client(state["url"]).lvmae
    run = database.runs.find_one({"_id": run_id})
    assert run["status"] == "COMPLETED" and "fail_trace" not in run, run.get("fail_trace")
    series = {m["name"]: m for m in database.metrics.find({"run_id": run_id})}
    # points still queued when the process died are lost (it is killed); none is stored twice
    assert series["train/loss"]["steps"][-3:] == [3, 4, 5], series["train/loss"]["steps"]
    for name, metric in series.items():       # every metric, whichever steps it is logged at
        assert metric["steps"] == sorted(set(metric["steps"])), (name, metric["steps"])
        assert len(metric["values"]) == len(metric["timestamps"]) == len(metric["steps"])


def test_report_aggregates_final_metrics_over_seeds(local_run, tmp_path):
    runs, state, _ = local_run
    for lr, seed in [(0.05, 1), (0.05, 2), (0.2, 1)]:   # two seeds (mean ± std) and one (n=1)
        done = run_lvmae(["tracking_check", "-b", f"tracking_check_loop.lr={lr}",
                          "-b", "tracking_check_loop.steps=4", "--tag", "ablation", "with", f"seed={seed}"], runs)
        assert done.returncode == 0, done.stderr[-3000:]
    plot = tmp_path / "report.png"
    report = run_lvmae(["report", "--tag", "ablation", "--by", "tracking_check_loop.lr",
                        "--metric", "train/loss", "--plot", str(plot)], runs, timeout=120)
    assert report.returncode == 0, report.stderr[-3000:]
    assert plot.read_bytes().startswith(b"\x89PNG")
    database = _client(state["url"]).lvmae
    for lr in (0.05, 0.2):       # parity with the final points read straight from the database
        ids = [r["_id"] for r in database.runs.find({"meta.tags": "ablation",
                                                      "config.gin.bindings.experiments.tracking_check_loop.lr": lr})]
        finals = [database.metrics.find_one({"run_id": i, "name": "train/loss"})["values"][-1] for i in ids]
        mean = sum(finals) / len(finals)
        line = next(l for l in report.stdout.splitlines() if l.startswith(str(lr)))
        assert (f"{mean:.4g} ±" in line and "(n=2)" in line) if len(ids) == 2 else f"{mean:.4g} (n=1)" in line
    assert "3 runs in 2 groups" in report.stdout


def test_db_stop_stops_the_local_server(local_run):
    runs, state, _ = local_run
    assert run_lvmae(["db", "status"], runs, timeout=60).returncode == 0
    stopped = run_lvmae(["db", "stop"], runs, timeout=60)
    assert f"stopped SecantusDB pid {state['pid']}" in stopped.stdout
    assert local_db.ping(state["url"], timeout_ms=500) is not None
    assert run_lvmae(["db", "status"], runs, timeout=60).returncode == 1


def test_credentials_never_reach_the_stored_run(tmp_path):
    daemon = Daemon(tmp_path / "db").start()
    try:
        with _client(daemon.url) as client:
            client.admin.command("createUser", "user", pwd="secret", roles=[{"role": "root", "db": "admin"}])
        daemon.stop()
        daemon.auth, daemon.credentials = True, "user:secret@"
        daemon.start()
        url = daemon.url
        result = run_lvmae(["tracking_check", "-b", "tracking_check_loop.steps=3",
                            "-b", f"tracking_check_loop.note='{url}'", "--comment", url],
                           tmp_path / "runs", LVMAE_MONGO_URL=url)
        assert result.returncode == 0, result.stderr[-3000:]
        database = _client(url).lvmae
        run = database.runs.find_one()
        assert "note: mongodb://user:***@" in run["captured_out"]           # the leak was there to catch
        stored = [bson.encode(doc) for name in ("runs", "metrics", "fs.files") for doc in database[name].find()]
        files = gridfs.GridFS(database)
        artifacts = [f.read() for f in files.find({"filename": {"$regex": "^artifact://"}})]
        assert any(b"user:***@" in blob for blob in artifacts)              # operative config holds the note
        assert not [blob for blob in stored + artifacts if b"secret" in blob]
        sources = [f.read() for f in files.find({"filename": {"$not": {"$regex": "^artifact://"}}})]
        assert sources and not [blob for blob in sources if b"user:secret" in blob]
    finally:
        daemon.stop()
