"""Study files (gin/studies/*.yaml), their commands and configuration hashes, and the study report
from stored runs. The statistics themselves: tests/test_study_stats.py."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from lvmae.experiments.reporting import stats
from lvmae.experiments.reporting import study as study_module
from lvmae.experiments.reporting.study import stage_command
from lvmae.experiments.reporting.study_analysis import ALPHA, analyse, arm_stats, verdict
from lvmae.experiments.reporting.study_command import config_hash
from lvmae.experiments.reporting.study_file import Study, load_study
from lvmae.experiments.reporting.study_report import descriptive_rows, render_study
from lvmae.experiments.reporting.study_runs import StoredRun, stored_runs, study_runs

STUDIES = sorted((Path(study_module.ROOT) / "gin" / "studies").glob("*.yaml"))


def _write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "s.yaml"
    path.write_text(text, encoding="utf-8")
    return str(path)


def _refused(path: Path, text: str, match: str) -> None:
    """Writing ``text`` to ``path`` gives a study file that load_study refuses, naming ``match``."""
    path.write_text(text, encoding="utf-8")
    with pytest.raises(SystemExit, match=match):
        load_study(str(path))


BASE = """name: toy
question: Does it work?
gin: [gin/experiments/tiny_cpu.gin]
stages: [pretrain, finetune]
seeds: 5
reference: a
metric: eval/top1
arms:
  a: []
  b: ["pretrain_loop.steps = 2"]
"""


def test_load_study_validates_and_names_the_file(tmp_path):
    study = load_study(_write(tmp_path, BASE))
    assert study.seeds == [1, 2, 3, 4, 5] and list(study.arms) == ["a", "b"]
    with pytest.raises(SystemExit, match=r"s\.yaml.*reference 'c'"):
        load_study(_write(tmp_path, BASE.replace("reference: a", "reference: c")))
    with pytest.raises(SystemExit, match=r"s\.yaml.*missing key.*metric"):
        load_study(_write(tmp_path, BASE.replace("metric: eval/top1\n", "")))
    with pytest.raises(SystemExit, match="must follow the order"):
        load_study(_write(tmp_path, BASE.replace("[pretrain, finetune]", "[finetune, pretrain]")))
    with pytest.raises(SystemExit, match="unknown key"):
        load_study(_write(tmp_path, BASE + "typo: 1\n"))


@pytest.mark.parametrize("path", STUDIES, ids=lambda p: p.stem)
def test_every_study_file_is_valid(path):
    study = load_study(str(path))
    assert len(study.seeds) >= 5, "every study needs ≥ 5 seeds: the report decides from no fewer"
    assert study.name == path.stem
    for gin_file in study.gin:
        assert (Path(study_module.ROOT) / gin_file).is_file(), gin_file


def test_stage_command_chains_pretrain_into_finetune(tmp_path):
    study = load_study(_write(tmp_path, BASE))
    args = stage_command(study, "b", 2, "finetune", str(tmp_path / "out"), ["gpu.gin"], ["x.y = 1"])
    workdir = tmp_path / "out" / "toy" / "b" / "seed_2"
    assert f"finetune_loop.pretrained = '{workdir}/pretrain/last.pt'" in args
    assert f"WORKDIR = '{workdir}'" in args and "pretrain_loop.steps = 2" in args and "x.y = 1" in args
    assert args[args.index("gpu.gin") - 1] == "-g"
    assert args[-2:] == ["with", "seed=2"] and "study=toy" in args and "arm=b" in args


def _store(runs_dir: Path, run_id: int, arm: str, seed: int, value: float, status: str = "COMPLETED",
           study: str = "toy", command: str = "finetune", metric: str = "eval/top1", task: str | None = None,
           of: Study | None = None, config: str | None = None):
    """A run folder as the file observer writes it: status, tags, seed and one metric's last value.
    With ``of``, tagged with the configuration hash that study file gives the run (``config``:
    that hash given as it is)."""
    folder = runs_dir / str(run_id)
    folder.mkdir(parents=True)
    tags = [f"study={study}", f"arm={arm}"] + ([f"task={task}"] if task else [])
    if of is not None:
        config = config_hash(of, arm, seed, command, [], [], task)
    tags += [f"config={config}"] if config else []
    (folder / "run.json").write_text(json.dumps({"command": command, "status": status, "meta": {"tags": tags}}))
    (folder / "config.json").write_text(json.dumps({"seed": seed}))
    (folder / "metrics.json").write_text(json.dumps({metric: {"steps": [10], "values": [value]}}))


A_VALUES, B_VALUES = [0.50, 0.52, 0.49, 0.51, 0.50], [0.90, 0.95, 0.92, 0.91, 0.93]


def test_report_from_stored_runs(tmp_path, monkeypatch):
    monkeypatch.setenv("LVMAE_OBSERVER", "file")
    monkeypatch.setenv("LVMAE_RUNS_DIR", str(tmp_path / "runs"))
    study = load_study(_write(tmp_path, BASE))
    empty = render_study(analyse(study, stored_runs("toy")), None, None)
    assert "Not run in this round" in empty and "python run.py study run" in empty
    run_id = 0
    for arm, values in (("a", A_VALUES), ("b", B_VALUES)):
        for seed, value in enumerate(values, start=1):
            run_id += 1
            _store(tmp_path / "runs", run_id, arm, seed, value, of=study)
    _store(tmp_path / "runs", 99, "b", 6, 0.0, status="FAILED", of=study)      # left out
    runs = stored_runs("toy")
    assert len(runs) == 10
    text = render_study(analyse(study, runs), tmp_path / "plots", tmp_path)
    row = next(line for line in text.splitlines() if line.startswith("| `b`"))
    # Paired by seed: differences 0.40, 0.43, 0.43, 0.40, 0.43 (mean 0.418, sd 0.01643, se 0.00735, t(4) = 56.88; t(4, 0.975) = 2.776 → ±0.0204).
    assert "0.922 ± 0.019" in row and "| 5 |" in row and "+0.418 [+0.398, +0.438]" in row
    assert "paired t = 56.88 (df 4.0)" in row and "higher" in row
    assert "Runs used: 10 of the current configuration." in text
    assert (tmp_path / "plots" / "toy.png").stat().st_size > 0


def test_prepare_stages_are_shared_by_every_arm(tmp_path):
    text = BASE.replace("stages: [pretrain, finetune]",
                        "prepare: [pretrain_tokenizer, precompute]\nstages: [pretrain, finetune]")
    study = load_study(_write(tmp_path, text))
    root = tmp_path / "out"
    shared, arm = root / "toy" / "_shared" / "seed_1", root / "toy" / "a" / "seed_1"
    tokenizer = stage_command(study, "_shared", 1, "pretrain_tokenizer", str(root), [], [])
    assert f"WORKDIR = '{shared}'" in tokenizer
    pretrain = stage_command(study, "a", 1, "pretrain", str(root), [], [])
    assert f"TOKENIZER_CHECKPOINT = '{shared}/tokenizer/last.pt'" in pretrain
    assert f"PRECOMPUTED_MANIFEST = '{shared}/precomputed/manifest.yaml'" in pretrain
    assert f"WORKDIR = '{arm}'" in pretrain
    finetune = stage_command(study, "a", 1, "finetune", str(root), [], [])
    assert f"finetune_loop.pretrained = '{arm}/pretrain/last.pt'" in finetune
    with pytest.raises(SystemExit, match="evaluations only in stages"):
        load_study(_write(tmp_path, BASE.replace("stages: [pretrain, finetune]",
                                                 "prepare: [finetune]\nstages: [probe]")))


def test_study_tool_dry_run_through_run_py(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("LVMAE_OBSERVER", "file")
    monkeypatch.setenv("LVMAE_RUNS_DIR", str(tmp_path / "runs"))
    from lvmae.experiments.commands import cli
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["run.py", "study", "run", str(STUDIES[0]), "--seed", "1", "--dry-run"])
    assert exit_info.value.code == 0
    printed = capsys.readouterr().out
    study = load_study(str(STUDIES[0]))
    # Per arm: each stage, plus each evaluated stage once per extra task; the prepare stages once.
    per_task = sum(stage in study.task_stages for stage in study.stages) if study.tasks else 0
    expected = len(study.arms) * (len(study.stages) + len(study.tasks) * per_task) + len(study.prepare)
    assert printed.count("$ ") == expected


@pytest.mark.parametrize("path", STUDIES, ids=lambda p: p.stem)
def test_every_arm_parses_with_the_gpu_override(path):
    """Each arm's bindings name real parameters of registered components, at CPU size and with
    the GPU override file."""
    import lvmae.experiments.commands  # noqa: F401  (registers the commands' gin functions)
    from lvmae.experiments.engine import gin_config

    study = load_study(str(path))
    for overrides in ([], ["gin/studies/gpu_vit_b.gin"]):
        for bindings in study.arms.values():
            gin_config.parse([*study.gin, *overrides], [*study.bindings, *bindings])


def test_report_shows_the_tokenizer_of_each_study(tmp_path, monkeypatch):
    monkeypatch.setenv("LVMAE_OBSERVER", "file")
    monkeypatch.setenv("LVMAE_RUNS_DIR", str(tmp_path / "runs"))
    text = BASE.replace("stages: [pretrain, finetune]", "prepare: [pretrain_tokenizer]\nstages: [pretrain, finetune]")
    study = load_study(_write(tmp_path, text))
    for run_id, (arm, psnr) in enumerate([("_shared", 20.0), ("_shared", 22.0), ("a", 0.5)], start=1):
        command = "pretrain_tokenizer" if arm == "_shared" else "finetune"
        _store(tmp_path / "runs", run_id, arm, run_id, psnr, command=command, of=study,
               metric="eval/psnr" if command == "pretrain_tokenizer" else "eval/top1")
    text = render_study(analyse(study, stored_runs("toy")), None, None)
    row = next(line for line in text.splitlines() if line.startswith("| `_shared`"))
    assert "21.000 ± 1.414" in row and "| 2 |" in row


def _analysed(study: Study, values: dict[str, list[float]], command: str = "finetune"):
    """The analysis of runs of the current configuration with these values (seeds 1, 2, ...)."""
    runs = [StoredRun(f"{arm}{seed}", command, arm, seed, {study.metric: value}, study=study.name, origin_arm=arm,
                      config=config_hash(study, arm, seed, command, [], []))
            for arm, arm_values in values.items() for seed, value in enumerate(arm_values, start=1)]
    return analyse(study, runs)


def _verdict(study: Study, values: dict[str, list[float]]) -> str:
    analysis = _analysed(study, values)
    return verdict(study, analysis.tables[0])


def test_verdict_follows_the_significance_against_the_reference(tmp_path):
    study = load_study(_write(tmp_path, BASE))
    high, low, same = B_VALUES, A_VALUES, [0.93, 0.92, 0.93, 0.90, 0.92]
    assert _verdict(study, {"a": high, "b": low}).startswith("held")
    assert _verdict(study, {"a": low, "b": high}).startswith("contradicted")
    assert _verdict(study, {"a": high, "b": same}).startswith("not shown (no significant difference for b")
    assert _verdict(study, {"a": high}).startswith("not tested")
    # Fewer than 5 seeds decide nothing, however large the difference.
    few = _verdict(study, {"a": high[:3], "b": low[:3]})
    assert few.startswith("not shown") and "too few seeds (n < 5): b" in few and "held" not in few
    # The heading names the arm that is short of seeds: here the reference.
    assert _analysed(study, {"a": high[:4], "b": low}).tables[0].too_few == ["a"]
    # A control arm is tested and named but does not decide the claim.
    three = BASE.replace('  b: ["pretrain_loop.steps = 2"]', '  b: ["pretrain_loop.steps = 2"]\n  c: []') + "controls: [c]\n"
    study = load_study(_write(tmp_path, three))
    text = _verdict(study, {"a": high, "b": low, "c": [0.99, 0.98, 0.99, 0.99, 0.98]})
    assert text.startswith("held") and text.endswith("control vs a: c: significantly higher")
    with pytest.raises(SystemExit, match="controls"):
        load_study(_write(tmp_path, BASE + "controls: [a]\n"))


def test_prepared_by_shares_the_owner_tokenizer_and_its_runs(tmp_path, monkeypatch):
    monkeypatch.setenv("LVMAE_OBSERVER", "file")
    monkeypatch.setenv("LVMAE_RUNS_DIR", str(tmp_path / "runs"))
    owner_text = BASE.replace("stages: [pretrain, finetune]",
                              "prepare: [pretrain_tokenizer, precompute]\nstages: [pretrain, finetune]")
    (tmp_path / "owner.yaml").write_text(owner_text.replace("name: toy", "name: owner"), encoding="utf-8")
    user = tmp_path / "user.yaml"
    user.write_text(BASE.replace("name: toy", "name: user\nprepared_by: owner"), encoding="utf-8")
    study = load_study(str(user))
    assert study.prepare == ["pretrain_tokenizer", "precompute"]
    root = tmp_path / "out"
    owner_shared = root / "owner" / "_shared" / "seed_1"
    tokenizer = stage_command(study, "_shared", 1, "pretrain_tokenizer", str(root), [], [])
    assert f"WORKDIR = '{owner_shared}'" in tokenizer and "study=owner" in tokenizer and "study=user" not in tokenizer
    owner_study = load_study(str(tmp_path / "owner.yaml"))       # the user's shared runs are the owner's, hash included
    assert "config=" + config_hash(owner_study, "_shared", 1, "pretrain_tokenizer", [], []) in tokenizer
    pretrain = stage_command(study, "a", 1, "pretrain", str(root), [], [])
    assert f"TOKENIZER_CHECKPOINT = '{owner_shared}/tokenizer/last.pt'" in pretrain and "study=user" in pretrain
    # The owner's completed tokenizer run counts for the user study (not run again) and shows in its report.
    owner = load_study(str(tmp_path / "owner.yaml"))
    _store(tmp_path / "runs", 1, "_shared", 1, 21.0, study="owner", command="pretrain_tokenizer", metric="eval/psnr",
           of=owner)
    assert [r.command for r in study_runs(study)] == ["pretrain_tokenizer"]
    assert [r.command for r in analyse(study, study_runs(study)).runs] == ["pretrain_tokenizer"]   # its hash matches
    # A user study whose bindings differ from the owner's cannot share its prepare stages.
    _refused(user, BASE.replace("name: toy", "name: user\nprepared_by: owner\nbindings: ['x.y = 1']"), "same bindings")
    _refused(user, BASE.replace("name: toy", "name: user\nprepared_by: nobody"), "no study file")


def test_tasks_evaluate_the_arm_encoder_on_extra_data(tmp_path, monkeypatch):
    monkeypatch.setenv("LVMAE_OBSERVER", "file")
    monkeypatch.setenv("LVMAE_RUNS_DIR", str(tmp_path / "runs"))
    text = BASE.replace("stages: [pretrain, finetune]", "stages: [pretrain, finetune, probe]\n"
                        "tasks: {real: [gin/data/arrow_of_time.gin, 'probe_loop.dataset = %REAL_FOOTAGE']}\n"
                        "task_stages: [probe]")
    study = load_study(_write(tmp_path, text))
    assert study.evaluations() == [("finetune", None), ("probe", None), ("probe", "real")]
    root, arm = tmp_path / "out", tmp_path / "out" / "toy" / "a" / "seed_1"
    args = stage_command(study, "a", 1, "probe", str(root), [], [], task="real")
    assert args[args.index("gin/data/arrow_of_time.gin") - 1] == "-g"
    assert f"WORKDIR = '{arm}/real'" in args and f"probe_loop.pretrained = '{arm}/pretrain/last.pt'" in args
    assert args.index("probe_loop.dataset = %REAL_FOOTAGE") > args.index(f"WORKDIR = '{arm}/real'")
    assert "task=real" in args
    # The report keeps the task's runs apart from the study's own evaluation.
    for i, (task, value) in enumerate([(None, 0.9), (None, 0.92), ("real", 0.6), ("real", 0.61)]):
        _store(tmp_path / "runs", i + 1, "a", i % 2 + 1, value, command="probe", task=task, of=study)
    runs = analyse(study, stored_runs("toy")).runs
    assert [s.values for s in arm_stats(study, runs, "probe")] == [[0.9, 0.92]]
    assert [s.values for s in arm_stats(study, runs, "probe", "real")] == [[0.6, 0.61]]
    text = render_study(analyse(study, stored_runs("toy")), None, None)
    assert "**probe on real**" in text and "**probe** (" in text
    no_probe = BASE.replace("stages: [pretrain, finetune]",
                            "stages: [pretrain, finetune]\ntasks: {r: [x.y = 1]}\ntask_stages: [probe]")
    with pytest.raises(SystemExit, match="task_stages"):
        load_study(_write(tmp_path, no_probe))


def test_reuse_takes_an_identical_arm_from_another_study(tmp_path, monkeypatch):
    monkeypatch.setenv("LVMAE_OBSERVER", "file")
    monkeypatch.setenv("LVMAE_RUNS_DIR", str(tmp_path / "runs"))
    (tmp_path / "other.yaml").write_text(BASE.replace("name: toy", "name: other"), encoding="utf-8")
    user = tmp_path / "user.yaml"
    user.write_text(BASE.replace("name: toy", "name: user\nreuse: {a: other/a}"), encoding="utf-8")
    study = load_study(str(user))
    assert study.reuse == {"a": ("other", "a")}
    other = load_study(str(tmp_path / "other.yaml"))
    for i, (name, arm, value) in enumerate([("other", "a", 0.7), ("other", "b", 0.1), ("user", "a", 0.2)]):
        _store(tmp_path / "runs", i + 1, arm, 1, value, study=name, of=other if name == "other" else study)
    runs = study_runs(study)       # the other study's arm a, not its b nor this study's own a
    assert [(r.arm, r.finals["eval/top1"]) for r in runs] == [("a", 0.7)]
    analysis = analyse(study, runs)     # hashed as the other study ran it: it counts
    assert [(r.arm, r.finals["eval/top1"]) for r in analysis.runs] == [("a", 0.7)] and analysis.stale == []
    assert "`a` = `other`'s `a`" in render_study(analysis, None, None)
    # Arms that would not run identically cannot be shared.
    _refused(user, BASE.replace("name: toy", "name: user\nreuse: {b: other/a}"), "arm bindings")
    _refused(user, BASE.replace("name: toy", "name: user\nbindings: ['x.y = 2']\nreuse: {a: other/a}"), "bindings")


def test_reuse_of_an_arm_that_trains_the_shared_tokenizer_itself(tmp_path):
    owner = BASE.replace("name: toy", "name: owner").replace(
        "stages: [pretrain, finetune]", "prepare: [pretrain_tokenizer, precompute]\nstages: [pretrain, finetune]")
    (tmp_path / "owner.yaml").write_text(owner, encoding="utf-8")
    own = BASE.replace("name: toy", "name: own\nreuse: {a: owner/a}").replace(
        "stages: [pretrain, finetune]", "stages: [pretrain_tokenizer, precompute, pretrain, finetune]")
    (tmp_path / "own.yaml").write_text(own, encoding="utf-8")
    assert load_study(str(tmp_path / "own.yaml")).reuse == {"a": ("owner", "a")}
    # Without the tokenizer stages its encoder would read no tokenizer the owner's did: refused.
    (tmp_path / "bare.yaml").write_text(BASE.replace("name: toy", "name: bare\nreuse: {a: owner/a}"), encoding="utf-8")
    with pytest.raises(SystemExit, match="tokenizer"):
        load_study(str(tmp_path / "bare.yaml"))


def test_jobs_run_seeds_at_once_each_chain_in_order(tmp_path, monkeypatch):
    monkeypatch.setenv("LVMAE_OBSERVER", "file")
    monkeypatch.setenv("LVMAE_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    study = load_study(_write(tmp_path, BASE))
    calls = []

    class Done:
        returncode = 0

    def fake_run(args, cwd, env, stdout, stderr):
        seed = int(args[-1].split("=")[1])
        calls.append((seed, args[2], args[args.index("--tag") + 3]))
        assert env["OMP_NUM_THREADS"] == str(max(1, (os.cpu_count() or 1) // 2)) and stdout is stderr is not None
        return Done()

    monkeypatch.setattr(study_module.subprocess, "run", fake_run)
    assert study_module.run_study(study, str(tmp_path / "out"), [], [], list(study.arms), [1, 2, 3], False,
                                  jobs=2) == 0
    assert len(calls) == 3 * 2 * 2                      # seeds × arms × stages, each once
    for seed in (1, 2, 3):
        assert [(c[1], c[2]) for c in calls if c[0] == seed] == [
            ("pretrain", "arm=a"), ("finetune", "arm=a"), ("pretrain", "arm=b"), ("finetune", "arm=b")]
        assert (tmp_path / "out" / "toy" / "logs" / f"seed_{seed}.log").exists()


def test_check_names_a_broken_arm_before_anything_runs(tmp_path, monkeypatch):
    monkeypatch.setenv("LVMAE_OBSERVER", "file")
    monkeypatch.setenv("LVMAE_RUNS_DIR", str(tmp_path / "runs"))
    text = BASE.replace('  b: ["pretrain_loop.steps = 2"]',
                        '  b: ["pretrain_loop.steps = 2"]\n'
                        '  bad: ["model.mae.decoder_masking = @masking.decoder.running_cell()",'
                        ' "masking.decoder.running_cell.budget = 0.15"]\n'
                        '  typo: ["pretrain_loop.stepz = 2"]')
    study = load_study(_write(tmp_path, text))
    problems = study_module.check_study(study, str(tmp_path / "out"), [], [], list(study.arms), 1)
    assert len(problems) == 2, problems
    assert problems[0].startswith("bad pretrain:") and "0.25, 0.5 or 0.75" in problems[0]
    assert problems[1].startswith("typo pretrain:") and "stepz" in problems[1]
    assert not (tmp_path / "runs").exists() and not (tmp_path / "out").exists()     # nothing ran


@pytest.mark.parametrize("path", STUDIES, ids=lambda p: p.stem)
def test_every_shipped_study_passes_its_check(path, tmp_path, monkeypatch):
    # Before anything has run: the chained inputs (tokenizer, precomputed targets, checkpoints)
    # do not exist yet, and every arm's every stage must still configure and build.
    monkeypatch.setenv("LVMAE_OBSERVER", "file")
    monkeypatch.setenv("LVMAE_RUNS_DIR", str(tmp_path / "runs"))
    study = load_study(str(path))
    assert study_module.check_study(study, str(tmp_path / "out"), [], [], list(study.arms), study.seeds[0]) == []


@pytest.mark.slow
def test_the_gpu_override_builds_every_arm_at_vit_b(tmp_path, monkeypatch):
    monkeypatch.setenv("LVMAE_OBSERVER", "file")
    monkeypatch.setenv("LVMAE_RUNS_DIR", str(tmp_path / "runs"))
    study = load_study(str(Path(study_module.ROOT) / "gin" / "studies" / "decoder_masking.yaml"))
    assert study_module.check_study(study, str(tmp_path / "out"), ["gin/studies/gpu_vit_b.gin"], [],
                                    list(study.arms), 1) == []


def test_config_hash_is_machine_independent_and_covers_what_defines_the_run(tmp_path):
    study = load_study(_write(tmp_path, BASE))
    base = config_hash(study, "b", 2, "finetune", [], [])
    # The --root (absolute folder of this machine) is not in it; the command carries it as a tag.
    for root in (tmp_path / "one", tmp_path / "two"):
        args = stage_command(study, "b", 2, "finetune", str(root), [], [])
        assert f"config={base}" in args and args[args.index(f"config={base}") - 1] == "--tag"
    # Everything that defines the run is.
    assert len({base, config_hash(study, "a", 2, "finetune", [], []), config_hash(study, "b", 3, "finetune", [], []),
                config_hash(study, "b", 2, "pretrain", [], []), config_hash(study, "b", 2, "finetune", ["gpu.gin"], []),
                config_hash(study, "b", 2, "finetune", [], ["x.y = 1"])}) == 6
    changed = load_study(_write(tmp_path, BASE.replace('"pretrain_loop.steps = 2"', '"pretrain_loop.steps = 3"')))
    assert config_hash(changed, "b", 2, "finetune", [], []) != base
    assert config_hash(changed, "a", 2, "finetune", [], []) == config_hash(study, "a", 2, "finetune", [], [])


def test_a_stale_run_is_neither_done_nor_reported(tmp_path, monkeypatch):
    monkeypatch.setenv("LVMAE_OBSERVER", "file")
    monkeypatch.setenv("LVMAE_RUNS_DIR", str(tmp_path / "runs"))
    old = load_study(_write(tmp_path, BASE))
    runs_dir = tmp_path / "runs"
    _store(runs_dir, 1, "b", 1, 0.9, of=old, command="pretrain")             # b's bindings change below
    _store(runs_dir, 2, "a", 1, 0.5, of=old, command="pretrain")             # a's do not: still current
    _store(runs_dir, 3, "a", 2, 0.5, command="pretrain")                     # tags only, no hash: stale
    _store(runs_dir, 4, "a", 1, 0.5, of=old)
    study = load_study(_write(tmp_path, BASE.replace('"pretrain_loop.steps = 2"', '"pretrain_loop.steps = 3"')))
    calls = []

    class Done:
        returncode = 0

    def fake_run(args, cwd, env, stdout, stderr):
        calls.append((args[2], args[args.index("--tag") + 3], args[-1]))
        return Done()

    monkeypatch.setattr(study_module.subprocess, "run", fake_run)
    assert study_module.run_study(study, str(tmp_path / "out"), [], [], list(study.arms), [1, 2], False) == 0
    assert ("pretrain", "arm=a", "seed=1") not in calls and ("finetune", "arm=a", "seed=1") not in calls
    assert ("pretrain", "arm=b", "seed=1") in calls and ("pretrain", "arm=a", "seed=2") in calls
    analysis = analyse(study, stored_runs("toy"))
    assert len(analysis.stale) == 2 and sorted(r.run_id for r in analysis.runs) == ["2", "4"]
    assert "**2 stale**" in render_study(analysis, None, None)


def test_an_evaluated_run_without_the_primary_metric_is_run_again(tmp_path, monkeypatch, capsys):
    # A finetune run of the current configuration that logged only another metric (run before the
    # study file named its metric) cannot be reported, so it is not done; one holding it is.
    monkeypatch.setenv("LVMAE_OBSERVER", "file")
    monkeypatch.setenv("LVMAE_RUNS_DIR", str(tmp_path / "runs"))
    study = load_study(_write(tmp_path, BASE.replace("metric: eval/top1", "metric: {finetune: eval/linear/top1}")))
    for run_id, arm in ((1, "a"), (2, "b")):
        _store(tmp_path / "runs", run_id, arm, 1, 0.5, of=study, command="pretrain", metric="train/loss")
    _store(tmp_path / "runs", 3, "a", 1, 0.5, of=study, metric="eval/top1")
    _store(tmp_path / "runs", 4, "b", 1, 0.5, of=study, metric="eval/linear/top1")
    calls = []

    class Done:
        returncode = 0

    def fake_run(args, cwd, env, stdout, stderr):
        calls.append((args[2], args[args.index("--tag") + 3]))
        return Done()

    monkeypatch.setattr(study_module.subprocess, "run", fake_run)
    assert study_module.run_study(study, str(tmp_path / "out"), [], [], list(study.arms), [1], False) == 0
    assert calls == [("finetune", "arm=a")]
    assert "a seed 1 finetune: run 3 has no 'eval/linear/top1' (it logged eval/top1)" in capsys.readouterr().out


def test_the_newest_run_of_a_seed_counts(tmp_path, monkeypatch):
    monkeypatch.setenv("LVMAE_OBSERVER", "file")
    monkeypatch.setenv("LVMAE_RUNS_DIR", str(tmp_path / "runs"))
    study = load_study(_write(tmp_path, BASE))
    # Run ids 9 and 10 of the same seed, no start time recorded: 10 is newer (as a number; as text
    # "9" > "10").
    _store(tmp_path / "runs", 10, "a", 1, 0.7, of=study)
    _store(tmp_path / "runs", 9, "a", 1, 0.4, of=study)
    analysis = analyse(study, stored_runs("toy"))
    assert [(r.run_id, r.finals["eval/top1"]) for r in analysis.runs] == [("10", 0.7)] and analysis.repeats == 1
    # With start times, the later start wins whatever the ids.
    for run_id, start in ((9, "2026-01-02T00:00:00"), (10, "2026-01-01T00:00:00")):
        record = json.loads((tmp_path / "runs" / str(run_id) / "run.json").read_text())
        (tmp_path / "runs" / str(run_id) / "run.json").write_text(json.dumps({**record, "start_time": start}))
    assert [r.run_id for r in analyse(study, stored_runs("toy")).runs] == ["9"]


SATURATING = BASE.replace('  b: ["pretrain_loop.steps = 2"]', '  b: ["pretrain_loop.steps = 2"]\n  rnd: []\n  oracle: []')


def test_saturated_arms_are_flagged_and_cannot_rank(tmp_path):
    top, mid, low = [0.99, 0.985, 0.995, 0.99, 0.98], [0.80, 0.82, 0.79, 0.81, 0.80], [0.50, 0.52, 0.49, 0.51, 0.5]
    study = load_study(_write(tmp_path, SATURATING + "ceiling: 1.0\nrandom_control: rnd\ncontrols: [rnd, oracle]\n"))
    analysis = _analysed(study, {"a": mid, "b": top, "rnd": [v + 0.005 for v in low], "oracle": top})
    rows = {row.stats.arm: row for row in analysis.tables[0].rows}
    assert rows["b"].saturated == "at ceiling" and rows["oracle"].saturated == "at ceiling"
    assert rows["a"].saturated == "" and rows["rnd"].saturated == ""      # the control is not measured against itself
    # One arm at the ceiling, significantly above an arm that is not: that ranks them (flag shown).
    assert rows["b"].outcome == "higher" and rows["b"].test.p < 0.001
    # Two arms at the same end cannot be ranked, however significant; nor does a null or an
    # equivalence test say anything where either arm is saturated.
    both = _analysed(study, {"a": [v - 0.005 for v in top], "b": top, "rnd": low})
    assert {r.stats.arm: r.outcome for r in both.tables[0].rows}["b"] == "cannot rank (saturated)"
    assert "saturated, cannot rank: b" in verdict(study, both.tables[0])
    null = _analysed(study, {"a": [0.99, 0.5, 0.99, 0.99, 0.99], "b": top, "rnd": low})
    assert {r.stats.arm: r.outcome for r in null.tables[0].rows}["b"] == "cannot rank (saturated)"
    equivalent = load_study(_write(tmp_path, SATURATING + "ceiling: 1.0\nrandom_control: rnd\ncontrols: [rnd, oracle]\n"
                                   "comparisons:\n  b: {kind: equivalence, margin: 0.5}\n"))
    rows = {r.stats.arm: r for r in _analysed(equivalent, {"a": mid, "b": top, "rnd": low}).tables[0].rows}
    assert rows["b"].test.p < ALPHA and rows["b"].outcome == "cannot rank (saturated)"
    # An arm at the random control's level is saturated too; so is a random control at the ceiling.
    analysis = _analysed(study, {"a": mid, "b": low, "rnd": [v + 0.01 for v in low]})
    assert {r.stats.arm: r.saturated for r in analysis.tables[0].rows}["b"] == "at random control"
    analysis = _analysed(study, {"a": mid, "b": low, "rnd": top})
    assert {r.stats.arm: r.saturated for r in analysis.tables[0].rows}["rnd"] == "at ceiling"
    # The ceiling may be an arm (an oracle or supervised model), and the margin the study's.
    study = load_study(_write(tmp_path, SATURATING + "ceiling: oracle\nsaturation_margin: 0.25\n"))
    analysis = _analysed(study, {"a": mid, "b": low, "oracle": top})
    rows = {row.stats.arm: row for row in analysis.tables[0].rows}
    assert rows["a"].saturated == "at ceiling" and rows["b"].saturated == "" and rows["oracle"].saturated == ""
    assert analysis.tables[0].ceiling == pytest.approx(sum(top) / 5)
    text = render_study(analysis, None, None)
    assert "saturated = within 0.25 of the ceiling 0.988 (`oracle`)" in text


def test_equivalence_comparisons_use_tost(tmp_path):
    text = BASE + "comparisons:\n  b: {kind: equivalence, margin: 0.02}\n"
    study = load_study(_write(tmp_path, text))
    ref = [0.80, 0.84, 0.78, 0.82, 0.81]
    same = _analysed(study, {"a": ref, "b": [v + 0.003 * (-1) ** i for i, v in enumerate(ref)]})
    row = same.tables[0].rows[1]
    assert row.outcome == "equivalent" and verdict(study, same.tables[0]).startswith("held: a equivalent to b (TOST)")
    assert "TOST ±0.02, paired" in render_study(same, None, None)
    apart = _analysed(study, {"a": ref, "b": [v - 0.05 for v in ref]})
    assert apart.tables[0].rows[1].outcome == "not shown equivalent"
    assert verdict(study, apart.tables[0]).startswith("not shown (not shown equivalent: b")


def test_holm_adjusts_over_every_test_of_the_study(tmp_path):
    text = SATURATING.replace("stages: [pretrain, finetune]", "stages: [pretrain, finetune, probe]")
    study = load_study(_write(tmp_path, text))
    values = {"a": [0.80, 0.84, 0.78, 0.82, 0.81], "b": [0.79, 0.845, 0.77, 0.80, 0.815],
              "rnd": [0.70, 0.76, 0.69, 0.71, 0.72], "oracle": [0.81, 0.86, 0.78, 0.83, 0.83]}
    runs = [StoredRun(f"{command}{arm}{seed}", command, arm, seed, {"eval/top1": value}, study="toy", origin_arm=arm,
                      config=config_hash(study, arm, seed, command, [], []))
            for command in ("finetune", "probe") for arm, vs in values.items() for seed, value in enumerate(vs, 1)]
    analysis = analyse(study, runs)
    rows = [row for table in analysis.tables for row in table.rows if row.p is not None]
    assert analysis.tests == len(rows) == 6          # 3 arms × 2 stages
    assert [row.p_adjusted for row in rows] == pytest.approx(stats.holm([row.p for row in rows]))
    assert any(row.p < 0.05 <= row.p_adjusted for row in rows)       # significant alone, not in the family
    text = render_study(analysis, None, None)
    assert "p Holm-adjusted over the study's 6 tests" in text


def test_study_file_evidence_keys_are_validated(tmp_path):
    path = tmp_path / "s.yaml"
    _refused(path, BASE + "comparisons: {c: {kind: equivalence, margin: 0.02}}\n", r"comparisons: c.*arm other")
    _refused(path, BASE + "comparisons: {a: {kind: equivalence, margin: 0.02}}\n", r"comparisons: a.*reference")
    _refused(path, BASE + "comparisons: {b: {kind: equivalence}}\n", r"s\.yaml: comparisons: b.*margin")
    _refused(path, BASE + "comparisons: {b: {kind: better}}\n", r"comparisons: b: expected")
    _refused(path, BASE + "comparisons: {b: {kind: superiority, margin: 0.1}}\n", "margin is only for equivalence")
    _refused(path, BASE + "ceiling: oracle\n", r"s\.yaml: ceiling must be a number.*'oracle'")
    _refused(path, BASE + "random_control: nobody\n", r"random_control must be an arm")
    _refused(path, BASE + "saturation_margin: -1\n", r"saturation_margin must be a number > 0")
    _refused(path, BASE.replace("metric: eval/top1", "metric: ''"), r"metric must name")
    _refused(path, BASE + "descriptive_metrics: [eval/top1]\n", r"descriptive_metrics")
    study = load_study(_write(tmp_path, BASE + "comparisons: {b: superiority}\nceiling: 1\n"))
    assert study.comparison("b").kind == "superiority" and study.ceiling == 1.0 and study.saturation_margin == 0.02


def test_report_command_writes_the_results_file(tmp_path, monkeypatch):
    monkeypatch.setenv("LVMAE_OBSERVER", "file")
    monkeypatch.setenv("LVMAE_RUNS_DIR", str(tmp_path / "runs"))
    study = load_study(_write(tmp_path, BASE + "descriptive_metrics: [eval/loss]\n"))
    for i, (arm, values) in enumerate((("a", B_VALUES), ("b", A_VALUES))):
        for seed, value in enumerate(values, start=1):
            _store(tmp_path / "runs", 10 * i + seed, arm, seed, value, of=study)
    _store(tmp_path / "runs", 99, "b", 1, 0.99, config="0123456789abcdef")       # another configuration
    out = tmp_path / "docs" / "results.md"
    assert study_module.main(["report", study.path, "--write", str(out)]) == 0
    text = out.read_text(encoding="utf-8")
    assert "1 stale run(s) ignored" in text and "paired t-test" in text and "Holm" in text
    assert "| toy |" in text and "held: a significantly higher than b" in text
    # No run recorded eval/loss: no empty descriptive table.
    assert "Descriptive metrics of" not in text and (tmp_path / "docs" / "results" / "toy.png").is_file()


def test_the_ledger_keeps_runs_so_another_machine_reports_them(tmp_path, monkeypatch):
    """A report records the store's completed runs into the ledger (JSON lines); on a machine whose
    store is empty the same report reads them back from the ledger alone — stale ones stay stale,
    and reporting twice adds nothing."""
    ledger = tmp_path / "ledger"
    monkeypatch.setenv("LVMAE_STUDY_RECORDS", str(ledger))
    monkeypatch.setenv("LVMAE_OBSERVER", "file")
    monkeypatch.setenv("LVMAE_RUNS_DIR", str(tmp_path / "runs"))
    study = load_study(_write(tmp_path, BASE))
    for i, (arm, values) in enumerate((("a", B_VALUES), ("b", A_VALUES))):
        for seed, value in enumerate(values, start=1):
            _store(tmp_path / "runs", 10 * i + seed, arm, seed, value, of=study)
    _store(tmp_path / "runs", 99, "b", 1, 0.99, config="0123456789abcdef")       # another configuration
    here = tmp_path / "here.md"
    assert study_module.main(["report", study.path, "--write", str(here)]) == 0
    lines = (ledger / "toy.jsonl").read_text(encoding="utf-8").splitlines()
    assert len(lines) == 11 and {json.loads(line)["seed"] for line in lines} == {1, 2, 3, 4, 5}
    assert study_module.main(["report", study.path, "--write", str(here)]) == 0
    assert len((ledger / "toy.jsonl").read_text(encoding="utf-8").splitlines()) == 11
    monkeypatch.setenv("LVMAE_RUNS_DIR", str(tmp_path / "empty"))      # another machine: nothing stored
    there = tmp_path / "there.md"
    assert study_module.main(["report", study.path, "--write", str(there)]) == 0
    def body(path: Path) -> list[str]:        # every line but the one naming where runs were read
        return [line for line in path.read_text(encoding="utf-8").splitlines() if "read the runs from" not in line]
    assert body(there) == body(here)
    assert "1 stale run(s) ignored" in there.read_text(encoding="utf-8")
    (ledger / "toy.jsonl").write_text('{"study": "toy"}\n', encoding="utf-8")
    with pytest.raises(ValueError, match=r"toy\.jsonl:1: not a study record"):
        stored_runs("toy")


def test_each_evaluated_stage_can_name_its_own_primary_metric(tmp_path):
    """A probe study whose attentive probes are saturated decides on the linear probes
    (``eval/linear/top1``) while its fine-tune rows keep ``eval/top1``."""
    text = BASE.replace("stages: [pretrain, finetune]", "stages: [pretrain, finetune, probe]").replace(
        "metric: eval/top1", "metric: {finetune: eval/top1, probe: eval/linear/top1}")
    study = load_study(_write(tmp_path, text))
    assert study.metric_for("probe") == "eval/linear/top1" and study.metric_for("probe on long") == "eval/linear/top1"
    assert study.metric_for("finetune") == "eval/top1"
    runs = [StoredRun(f"{arm}{command}{seed}", command, arm, seed,
                      {"eval/top1": 0.99, "eval/linear/top1": value + (0.4 if arm == "a" else 0.0)},
                      study=study.name, origin_arm=arm)
            for arm in ("a", "b") for command in ("finetune", "probe") for seed, value in enumerate(A_VALUES, 1)]
    probe = {s.arm: s.mean for s in arm_stats(study, runs, "probe")}
    finetune = {s.arm: s.mean for s in arm_stats(study, runs, "finetune")}
    assert probe["a"] - probe["b"] == pytest.approx(0.4) and finetune == {"a": 0.99, "b": 0.99}
    path = tmp_path / "s.yaml"
    _refused(path, text.replace("probe: eval/linear/top1", "pretrain: eval/loss"), r"s\.yaml: metric as a mapping")



def test_a_study_of_the_reference_against_its_controls_decides_on_them(tmp_path):
    """battery_long's shape: pixel_mae vs random_init only, random_init a control. The verdict
    compares with the controls, and a descriptive metric shows only where runs hold it."""
    text = (BASE.replace("stages: [pretrain, finetune]", "stages: [pretrain, finetune, probe]")
            .replace("metric: eval/top1", "metric: {finetune: eval/top1, probe: eval/linear/top1}")
            + "controls: [b]\ndescriptive_metrics: [knn/top1]\n")
    study = load_study(_write(tmp_path, text))
    runs = [StoredRun(f"{arm}{command}{seed}", command, arm, seed,
                      {"eval/top1": top1, **({"eval/linear/top1": top1, "knn/top1": 0.99} if command == "probe" else {})},
                      study=study.name, origin_arm=arm, config=config_hash(study, arm, seed, command, [], []))
            for arm, values in (("a", B_VALUES), ("b", A_VALUES)) for command in ("finetune", "probe")
            for seed, top1 in enumerate(values, 1)]
    analysis = analyse(study, runs)
    probe = next(t for t in analysis.tables if t.command == "probe")
    finetune = next(t for t in analysis.tables if t.command == "finetune")
    assert verdict(study, probe) == "held: a significantly higher than b (Holm-adjusted p < 0.05)"
    assert descriptive_rows(study, runs, finetune) == []
    shown = descriptive_rows(study, runs, probe)
    assert shown[2] == "| arm | knn/top1 |" and shown[4].startswith("| `a` | 0.990 ± 0.000 (5)")

def test_the_results_page_shows_the_battery_report_beside_it(tmp_path):
    from lvmae.experiments.reporting.study_report import BATTERY_REPORTS, battery_section
    assert battery_section(tmp_path) == [] and battery_section(None) == []
    newest, oldest = BATTERY_REPORTS.values()
    (tmp_path / oldest).parent.mkdir(parents=True)
    (tmp_path / oldest).write_text("| task | ranks |\n|---|---|\n| playback_speed | no |\n", encoding="utf-8")
    text = "\n".join(battery_section(tmp_path))
    assert "| playback_speed | no |" in text and f"]({oldest.as_posix()})" in text and newest.as_posix() not in text
    (tmp_path / newest).write_text("| task | ranks |\n|---|---|\n| long_range | linear |\n", encoding="utf-8")
    text = "\n".join(battery_section(tmp_path))
    assert text.index("| long_range | linear |") < text.index("| playback_speed | no |")
