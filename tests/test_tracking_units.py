"""Tracking pieces that need no database: redaction, run.py's tracking options, observer
choice and its errors, report aggregation."""
from __future__ import annotations

import math

import pytest
from sacred.observers import FileStorageObserver

from lvmae.experiments.commands import cli as run_py
from lvmae.experiments.reporting import report
from lvmae.experiments.tracking import observers
from lvmae.experiments.tracking.board import with_database
from lvmae.experiments.tracking.redact import redact, redact_text, remember_secret_of


def test_redact_masks_passwords_in_urls_and_nested_values():
    text = "connect mongodb://alice:pa55@db:27017/x and mongodb+srv://bob:s3cr%40t@h/?a=1"
    assert redact_text(text) == "connect mongodb://alice:***@db:27017/x and mongodb+srv://bob:***@h/?a=1"
    value = {"a": ["mongodb://u:pw1@h"], "mongodb://u:pw2@h": ("x", 3), "n": 1.5}
    assert redact(value) == {"a": ["mongodb://u:***@h"], "mongodb://u:***@h": ("x", 3), "n": 1.5}
    assert redact_text("no credentials: mongodb://h:1/x, user@example.org") == \
        "no credentials: mongodb://h:1/x, user@example.org"


def test_known_secret_is_masked_outside_urls():
    remember_secret_of("mongodb://u:Zq9-unit-secret@h:1/")
    assert "Zq9-unit-secret" not in redact_text("auth failed for password Zq9-unit-secret")


def test_tag_and_resume_options_are_moved_out_of_sacreds_line(capsys):
    argv, tags, resume = run_py.pop_tracking_options(
        ["run.py", "pretrain", "--tag", "a", "--tag=b", "--resume-run", "7", "with", "x=1", "--tags=c"])
    assert tags == ["c", "a", "b"] and resume == 7
    assert argv == ["run.py", "pretrain", "with", "x=1", "--tags=c,a,b"]
    with pytest.raises(SystemExit) as refused:
        run_py.pop_tracking_options(["run.py", "pretrain", "--resume-run", "last"])
    assert refused.value.code == 2 and "--resume-run needs a run id" in capsys.readouterr().err


def test_observer_choice_is_validated(monkeypatch, tmp_path):
    monkeypatch.setenv("LVMAE_OBSERVER", "sql")
    with pytest.raises(SystemExit, match="LVMAE_OBSERVER='sql' is not one of mongo, file"):
        observers.default_observer()
    monkeypatch.setenv("LVMAE_OBSERVER", "file")
    monkeypatch.setenv("LVMAE_RUNS_DIR", str(tmp_path))
    assert isinstance(observers.default_observer(), FileStorageObserver)


def test_unreachable_database_fails_clearly_or_falls_back_loudly(monkeypatch, tmp_path, capsys):
    from tests.tracking_support import free_port
    monkeypatch.delenv("LVMAE_OBSERVER", raising=False)
    monkeypatch.setenv("LVMAE_RUNS_DIR", str(tmp_path))
    monkeypatch.setenv("LVMAE_MONGO_URL", f"mongodb://user:hunter2@127.0.0.1:{free_port()}/?directConnection=true")
    monkeypatch.setattr(observers.local_db, "PING_TIMEOUT_MS", 300)
    with pytest.raises(SystemExit) as failure:
        observers.default_observer()
    message = str(failure.value)
    assert "does not answer" in message and "LVMAE_DB_FALLBACK=file" in message
    assert "hunter2" not in message and "user:***@127.0.0.1" in message
    monkeypatch.setenv("LVMAE_DB_FALLBACK", "file")
    assert isinstance(observers.default_observer(), FileStorageObserver)
    assert "recording this run as files" in capsys.readouterr().err


def test_no_database_installed_records_files_saying_so_in_one_line(monkeypatch, tmp_path, capsys):
    """No LVMAE_MONGO_URL and no secantusd-py (lvmae installed without [localdb]): the run is
    recorded as files, one line says so, and nothing is left under <runs>/db."""
    monkeypatch.delenv("LVMAE_OBSERVER", raising=False)
    monkeypatch.delenv("LVMAE_MONGO_URL", raising=False)
    monkeypatch.setenv("LVMAE_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.setattr(observers.local_db, "DAEMON", "secantusd-py-not-installed-here")
    assert observers.observer_kind() == "file"
    assert isinstance(observers.default_observer(), FileStorageObserver)
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no database" in err and "pip install 'lvmae[localdb]'" in err
    assert f"recording this run as files under {tmp_path / 'runs'}/" in err
    with pytest.raises(observers.local_db.LocalDatabaseError, match="secantusd-py-not-installed-here not found"):
        observers.local_db.ensure_server()        # `db start`, `board`, `report`: they need the server
    assert not (tmp_path / "runs" / "db").exists()
    monkeypatch.setenv("LVMAE_OBSERVER", "mongo")   # asked for explicitly: the same (no server to run)
    assert observers.observer_kind() == "file"
    monkeypatch.setenv("LVMAE_MONGO_URL", "mongodb://127.0.0.1:1/")
    assert observers.observer_kind() == "mongo"     # a URL given: its database, or a clear failure


def test_board_puts_the_database_name_in_the_url_path():
    assert with_database("mongodb://u:p@h:1/?directConnection=true", "lvmae") == \
        "mongodb://u:p@h:1/lvmae?directConnection=true"


def test_report_aggregates_final_metrics_over_seeds_per_group():
    rows = [report.RunRow(1, 0, (0.1,), {"eval/top1": 0.5}), report.RunRow(2, 1, (0.1,), {"eval/top1": 0.7}),
            report.RunRow(3, 0, (0.2,), {"eval/top1": 0.9}), report.RunRow(4, 1, (0.2,), {})]
    groups = report.aggregate(rows, ["eval/top1"])
    assert [g.group for g in groups] == [(0.1,), (0.2,)]
    mean, std, n = groups[0].stats["eval/top1"]
    assert (mean, n) == (pytest.approx(0.6), 2) and std == pytest.approx(math.sqrt(0.02))
    mean, std, n = groups[1].stats["eval/top1"]
    assert (mean, n) == (0.9, 1) and math.isnan(std)       # one seed: no spread to report
    assert groups[1].seeds == [0, 1]
    table = report.format_table(groups, ["budget"], ["eval/top1"])
    assert "0.6 ± 0.14 (n=2)" in table and "0.9 (n=1)" in table


def test_report_maps_bindings_to_config_fields():
    assert report.config_path("masking.decoder.random.budget") == "config.gin.bindings.masking.decoder.random.budget"
    assert report.config_path("%WORKDIR") == "config.gin.macros.WORKDIR"
    assert report.config_path("config.seed") == "config.seed"
    assert report.parse_where("pretrain_loop.steps=300") == ("config.gin.bindings.pretrain_loop.steps", 300)
    assert report.candidate_paths("config.gin.bindings.pretrain_loop.steps")[1] == \
        "config.gin.bindings.experiments.pretrain_loop.steps"
    with pytest.raises(SystemExit, match="not a gin binding"):
        report.config_path("budget")


def test_captured_output_is_bounded_keeping_its_start_and_end():
    from lvmae.experiments.tracking.run_tags import CAPTURED_HEAD_CHARS, MAX_CAPTURED_CHARS, bounded
    text = "first line\n" + "x" * (3 * MAX_CAPTURED_CHARS) + "\nlast line"
    kept = bounded(text)
    assert len(kept) < MAX_CAPTURED_CHARS + 100
    assert kept.startswith("first line") and kept.endswith("last line")
    assert f"[... {len(text) - MAX_CAPTURED_CHARS} characters of output left out ...]" in kept
    assert bounded("short") == "short" and CAPTURED_HEAD_CHARS < MAX_CAPTURED_CHARS


def test_counters_go_to_info_and_never_onto_the_loss_plot():
    from lvmae.experiments.engine.training import ScalarLogger
    from lvmae.experiments.tracking.scalars import COUNTERS_INFO_KEY

    class FakeRun:
        def __init__(self):
            self.info, self.metrics = {}, []

        def log_scalar(self, name, value, step):
            self.metrics.append((name, value, step))

    run = FakeRun()
    logger = ScalarLogger(run, total_steps=2, every=1, description="t", show=False)
    logger.log(1, **{"train/loss": 1.5, "train/loss_tokens": 304, "train/lr": 0.1})
    logger.log(2, **{"train/loss": 1.2, "train/loss_tokens": 304})
    assert [name for name, _, _ in run.metrics] == ["train/loss", "train/lr", "train/loss"]
    assert run.info[COUNTERS_INFO_KEY] == {"train/loss_tokens": {"value": 304.0, "step": 2}}


def test_one_queued_observer_records_runs_one_after_the_other(tmp_path):
    """``run.py seeds`` records its members in one process through one observer: the second
    run's events are written like the first's (none left behind by the first run's flush)."""
    from lvmae.experiments.tracking.mongo_observer import SafeQueuedMongoObserver

    class FakeCovered:
        run_entry = None

        def __init__(self):
            self.events, self.run_id = [], 0

        def started_event(self, *args, **kwargs):
            self.run_id += 1
            self.events.append((self.run_id, "started_event"))
            return self.run_id

        def __getattr__(self, name):
            return lambda *args, **kwargs: self.events.append((self.run_id, name))

    covered = FakeCovered()
    observer = SafeQueuedMongoObserver(covered, tmp_path / "spool", tmp_path / "unflushed", "fake://",
                                       flush_timeout_s=10.0)
    for _ in range(2):
        observer.started_event()
        observer.log_metrics({"train/loss": {"steps": [1], "values": [1.0], "timestamps": [0]}}, {})
        observer.completed_event()
    assert covered.events == [(run, name) for run in (1, 2)
                              for name in ("started_event", "log_metrics", "completed_event")]
    assert not (tmp_path / "unflushed").exists()


def test_resume_replays_the_command_line_without_crash_test_hooks():
    from lvmae.experiments.commands.resume import command_line
    run = {"command": "pretrain", "config": {"gin_files": ["gin/experiments/tiny_cpu.gin"], "seed": 3,
                                             "gin_bindings": ["pretrain_loop.steps = 20", "pretrain_loop.exit_after_step=12"]}}
    line = command_line(7, run, ["-b", "pretrain_loop.steps=30"])
    assert "exit_after_step" not in " ".join(line) and "pretrain_loop.steps = 20" in " ".join(line)
    assert line[1:6] == ["pretrain", "-b", "pretrain_loop.steps=30", "--resume-run", "7"]


def test_a_resumed_file_store_run_keeps_its_points_up_to_the_checkpoint_and_no_old_failure(tmp_path):
    import datetime
    import json
    observer = observers.file_observer()
    observer.basedir = str(tmp_path)
    ex_info = {"name": "t", "base_dir": str(tmp_path), "sources": [], "dependencies": [], "repositories": []}
    now = datetime.datetime(2026, 1, 1)
    run_id = observer.started_event(ex_info, "pretrain", {}, now, {}, {}, None)
    points = lambda a, b: {"steps": list(range(a, b + 1)), "values": list(range(a, b + 1)),
                           "timestamps": [now] * (b - a + 1)}
    observer.log_metrics({"train/loss": points(1, 12)}, {})
    observer.failed_event(now, ["killed"])
    resumed = observers.ResumableFileStorageObserver(str(tmp_path), resume_run=run_id)
    resumed.started_event(ex_info, "pretrain", {}, now, {}, {}, None)
    resumed.truncate_metrics(after_step=10)
    resumed.log_metrics({"train/loss": points(11, 20)}, {})
    resumed.completed_event(now, None)
    run = json.loads((tmp_path / str(run_id) / "run.json").read_text())
    assert run["status"] == "COMPLETED" and "fail_trace" not in run
    assert json.loads((tmp_path / str(run_id) / "metrics.json").read_text())["train/loss"]["steps"] == list(range(1, 21))
