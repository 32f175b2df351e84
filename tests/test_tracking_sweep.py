"""``run.py sweep``: every member its own recorded run and folder, N at a time, resumable (a
rerun skips completed members and runs only the rest), checked by preflight before anything
starts, emitted as command lines for a scheduler; ``report --tag`` shows the table."""
from __future__ import annotations

import json
import shlex

import pytest

from lvmae.experiments.commands.sweep import member_key, plan, points
from tests.tracking_support import run_lvmae

STEP_BINDINGS = ["-b", "tracking_check_loop.steps=3"]
GRID = ["--grid", "tracking_check_loop.lr=[0.05,0.1]"]


def _sweep(tmp_path, *extra: str, observer: str = "file"):
    env = {"LVMAE_OBSERVER": observer} if observer else {}
    return run_lvmae(["sweep", "tracking_check", *STEP_BINDINGS, *GRID, "--tag", "sw",
                      "--workdir", str(tmp_path / "sweeps"), *extra], tmp_path / "runs", timeout=600, **env)


def _state(tmp_path) -> dict:
    return json.loads((tmp_path / "sweeps" / "sw" / "sweep.json").read_text())


def test_grid_times_seeds_and_variants_make_stable_members():
    assert points(["a.x=[1,2]", "b.y=['p','q']"], []) == [
        ["a.x=1", "b.y='p'"], ["a.x=1", "b.y='q'"], ["a.x=2", "b.y='p'"], ["a.x=2", "b.y='q'"]]
    assert points([], ["a.x=1; b.y=2"]) == [["a.x=1", "b.y=2"]]
    members = plan(["a.x=[1,2,3]"], [], seeds=3, first_seed=1)
    assert len(members) == 9 and len({m.key for m in members}) == 9
    assert member_key(["a.x=1"], 2) == member_key(["a.x=1"], 2) != member_key(["a.x=1"], 3)
    with pytest.raises(SystemExit, match="BINDING="):
        points(["no_equals_sign"], [])


@pytest.mark.slow
def test_members_run_in_their_own_folders_and_a_rerun_runs_only_what_is_not_completed(tmp_path):
    first = _sweep(tmp_path, "--jobs", "2")
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    state = _state(tmp_path)
    assert [m["status"] for m in state["members"]] == ["COMPLETED"] * 2
    assert sorted(m["run_id"] for m in state["members"]) == [1, 2]
    for member in state["members"]:
        log = (tmp_path / "sweeps" / "sw" / member["key"] / "log.txt").read_text()
        assert f"WORKDIR={str(tmp_path / 'sweeps' / 'sw' / member['key'])!r}" in shlex.split(
            log.splitlines()[1][2:]), log[:500]
        run = json.loads((tmp_path / "runs" / str(member["run_id"]) / "run.json").read_text())
        assert run["status"] == "COMPLETED" and run["meta"]["tags"] == ["sw"]
    again = _sweep(tmp_path)
    assert again.returncode == 0 and "2 of 2 members already completed" in again.stdout
    assert not (tmp_path / "runs" / "3").exists()
    # A member that did not finish (its sweep was killed) runs again; the others stay done.
    state["members"][1]["status"] = "FAILED"
    (tmp_path / "sweeps" / "sw" / "sweep.json").write_text(json.dumps(state))
    third = _sweep(tmp_path)
    assert third.returncode == 0 and "1 of 2 members already completed" in third.stdout
    assert (tmp_path / "runs" / "3").exists() and not (tmp_path / "runs" / "4").exists()


def test_a_bad_point_stops_the_sweep_before_any_member_starts(tmp_path):
    result = run_lvmae(["sweep", "tracking_check", *STEP_BINDINGS, "--grid", "tracking_check_loop.steps=[2,-1]",
                        "--tag", "sw", "--workdir", str(tmp_path / "sweeps")], tmp_path / "runs",
                       LVMAE_OBSERVER="file")
    assert result.returncode == 2 and "tracking_check_loop.steps = -1: must be ≥ 1" in result.stderr
    assert not (tmp_path / "runs").exists() and not (tmp_path / "sweeps").exists()


def test_emit_writes_one_runnable_line_per_member(tmp_path):
    lines_file = tmp_path / "members.txt"
    result = _sweep(tmp_path, "--seeds", "2", "--emit", str(lines_file))
    assert result.returncode == 0, result.stderr
    lines = [shlex.split(line) for line in lines_file.read_text().splitlines()]
    assert len(lines) == 4 and {line[-1] for line in lines} == {"seed=1", "seed=2"}
    assert all(line[2] == "tracking_check" and "--tag" in line for line in lines)
    assert not (tmp_path / "runs").exists()


@pytest.mark.slow
def test_report_by_tag_shows_one_row_per_grid_point_over_seeds(tmp_path):
    from lvmae.experiments.tracking import local_db
    try:
        result = _sweep(tmp_path, "--seeds", "2", "--jobs", "2", observer="")
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
        report = run_lvmae(["report", "--tag", "sw", "--by", "tracking_check_loop.lr", "--metric", "train/loss",
                            "--plot", str(tmp_path / "r.png")], tmp_path / "runs")
        assert report.returncode == 0, report.stderr
        rows = [line for line in report.stdout.splitlines() if line.startswith(("0.05", "0.1"))]
        assert len(rows) == 2 and all("(n=2)" in row for row in rows), report.stdout
    finally:
        local_db.stop_server(tmp_path / "runs")


def test_resume_reruns_the_stored_command_line_into_the_same_run(tmp_path):
    runs = tmp_path / "runs"
    first = run_lvmae(["tracking_check", "-b", "tracking_check_loop.steps=2", "with", "seed=11"], runs,
                      LVMAE_OBSERVER="file")
    assert first.returncode == 0, first.stderr[-2000:]
    done = run_lvmae(["resume", "1"], runs, LVMAE_OBSERVER="file")
    assert done.returncode == 2 and "is COMPLETED" in done.stderr
    missing = run_lvmae(["resume", "9"], runs, LVMAE_OBSERVER="file")
    assert missing.returncode == 2 and "no run 9" in missing.stderr
    further = run_lvmae(["resume", "1", "-b", "tracking_check_loop.steps=3"], runs, LVMAE_OBSERVER="file")
    assert further.returncode == 0, further.stderr[-2000:]
    assert "--resume-run 1" in further.stdout and not (runs / "2").exists()
    config = json.loads((runs / "1" / "config.json").read_text())
    assert config["seed"] == 11
    assert config["gin_bindings"] == ["tracking_check_loop.steps=2", "tracking_check_loop.steps=3"]
