"""Study files (gin/studies/*.yaml), the Welch test, and the study report from stored runs."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from lvmae.experiments.reporting import study as study_module
from lvmae.experiments.reporting.study import stage_command
from lvmae.experiments.reporting.study_file import load_study
from lvmae.experiments.reporting.study_report import ArmStats, arm_stats, render_study, verdict
from lvmae.experiments.reporting.study_runs import stored_runs, study_runs
from lvmae.experiments.reporting.welch import welch

STUDIES = sorted((Path(study_module.ROOT) / "gin" / "studies").glob("*.yaml"))


def test_welch_matches_reference_values():
    # Reference values: scipy.stats.ttest_ind(a, b, equal_var=False).
    result = welch([0.9, 0.95, 0.92], [0.5, 0.52, 0.49])
    assert result["t"] == pytest.approx(24.710633027411212, rel=1e-9)
    assert result["df"] == pytest.approx(3.297560975609761, rel=1e-9)
    assert result["p"] == pytest.approx(7.387809299772597e-05, rel=1e-6)
    result = welch([1.0, 2.0, 3.0, 4.0], [2.5, 3.5, 4.5])
    assert result["t"] == pytest.approx(-1.1547005383792517, rel=1e-9)
    assert result["p"] == pytest.approx(0.3008027072551761, rel=1e-6)


def test_welch_degenerate_samples():
    assert welch([0.5, 0.5], [0.5, 0.5])["p"] == 1.0
    assert welch([0.9, 0.9], [0.5, 0.5])["p"] == 0.0
    with pytest.raises(ValueError, match="≥ 2 values"):
        welch([0.5], [0.4, 0.6])


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
seeds: 3
reference: a
metric: eval/top1
arms:
  a: []
  b: ["pretrain_loop.steps = 2"]
"""


def test_load_study_validates_and_names_the_file(tmp_path):
    study = load_study(_write(tmp_path, BASE))
    assert study.seeds == [1, 2, 3] and list(study.arms) == ["a", "b"]
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
    assert len(study.seeds) >= 3, "every study needs ≥ 3 seeds"
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
           study: str = "toy", command: str = "finetune", metric: str = "eval/top1", task: str | None = None):
    """A run folder as the file observer writes it: status, tags, seed and one metric's last value."""
    folder = runs_dir / str(run_id)
    folder.mkdir(parents=True)
    tags = [f"study={study}", f"arm={arm}"] + ([f"task={task}"] if task else [])
    (folder / "run.json").write_text(json.dumps({"command": command, "status": status, "meta": {"tags": tags}}))
    (folder / "config.json").write_text(json.dumps({"seed": seed}))
    (folder / "metrics.json").write_text(json.dumps({metric: {"steps": [10], "values": [value]}}))


def test_report_from_stored_runs(tmp_path, monkeypatch):
    monkeypatch.setenv("LVMAE_OBSERVER", "file")
    monkeypatch.setenv("LVMAE_RUNS_DIR", str(tmp_path / "runs"))
    study = load_study(_write(tmp_path, BASE))
    empty = render_study(study, stored_runs("toy"), None, None)
    assert "Not run in this round" in empty and "python run.py study run" in empty
    for i, (arm, seed, value) in enumerate([("a", 1, 0.50), ("a", 2, 0.52), ("a", 3, 0.49),
                                            ("b", 1, 0.90), ("b", 2, 0.95), ("b", 3, 0.92)]):
        _store(tmp_path / "runs", i + 1, arm, seed, value)
    _store(tmp_path / "runs", 99, "b", 4, 0.0, status="FAILED")      # left out
    runs = stored_runs("toy")
    assert len(runs) == 6
    text = render_study(study, runs, tmp_path / "plots", tmp_path)
    row = next(line for line in text.splitlines() if line.startswith("| `b`"))
    assert "0.923 ± 0.025" in row and "| 3 |" in row and "higher" in row and "7.39e-05" in row
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
    assert printed.count("$ ") == len(load_study(str(STUDIES[0])).arms) * len(load_study(str(STUDIES[0])).stages) \
        + len(load_study(str(STUDIES[0])).prepare)


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
        folder = tmp_path / "runs" / str(run_id)
        folder.mkdir(parents=True)
        command = "pretrain_tokenizer" if arm == "_shared" else "finetune"
        (folder / "run.json").write_text(json.dumps({"command": command, "status": "COMPLETED",
                                                      "meta": {"tags": ["study=toy", f"arm={arm}"]}}))
        (folder / "config.json").write_text(json.dumps({"seed": run_id}))
        metrics = ({"eval/psnr": psnr, "eval/codebook_usage": 0.3, "eval/perplexity": 90.0}
                   if command == "pretrain_tokenizer" else {"eval/top1": psnr})
        (folder / "metrics.json").write_text(json.dumps({k: {"steps": [1], "values": [v]} for k, v in metrics.items()}))
    text = render_study(study, stored_runs("toy"), None, None)
    row = next(line for line in text.splitlines() if line.startswith("| `_shared`"))
    assert "21.000 ± 1.414" in row and "0.300" in row and "| 2 |" in row


def test_verdict_follows_the_significance_against_the_reference(tmp_path):

    study = load_study(_write(tmp_path, BASE))
    high, low, same = [0.9, 0.95, 0.92], [0.5, 0.52, 0.49], [0.91, 0.93, 0.94]
    assert verdict(study, [ArmStats("a", high, [1, 2, 3]), ArmStats("b", low, [1, 2, 3])]).startswith("held")
    assert verdict(study, [ArmStats("a", low, [1, 2, 3]), ArmStats("b", high, [1, 2, 3])]).startswith("contradicted")
    assert verdict(study, [ArmStats("a", high, [1, 2, 3]), ArmStats("b", same, [1, 2, 3])]).startswith("not shown")
    assert verdict(study, [ArmStats("a", high, [1, 2, 3])]).startswith("not tested")
    # One seed is not "no significant difference": it is too few to test.
    few = verdict(study, [ArmStats("a", high, [1, 2, 3]), ArmStats("b", [0.1], [1])])
    assert few.startswith("not shown") and "too few seeds: b" in few and "no significant" not in few
    # A control arm is tested and named but does not decide the claim.
    three = BASE.replace('  b: ["pretrain_loop.steps = 2"]', '  b: ["pretrain_loop.steps = 2"]\n  c: []') + "controls: [c]\n"
    study = load_study(_write(tmp_path, three))
    text = verdict(study, [ArmStats("a", high, [1, 2, 3]), ArmStats("b", low, [1, 2, 3]),
                           ArmStats("c", [0.99, 0.98, 0.99], [1, 2, 3])])
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
    pretrain = stage_command(study, "a", 1, "pretrain", str(root), [], [])
    assert f"TOKENIZER_CHECKPOINT = '{owner_shared}/tokenizer/last.pt'" in pretrain and "study=user" in pretrain
    # The owner's completed tokenizer run counts for the user study (not run again) and shows in its report.
    _store(tmp_path / "runs", 1, "_shared", 1, 21.0, study="owner", command="pretrain_tokenizer", metric="eval/psnr")
    assert [r.command for r in study_runs(study)] == ["pretrain_tokenizer"]
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
        _store(tmp_path / "runs", i + 1, "a", i % 2 + 1, value, command="probe", task=task)
    runs = stored_runs("toy")
    assert [s.values for s in arm_stats(study, runs, "probe")] == [[0.9, 0.92]]
    assert [s.values for s in arm_stats(study, runs, "probe", "real")] == [[0.6, 0.61]]
    text = render_study(study, runs, None, None)
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
    for i, (name, arm, value) in enumerate([("other", "a", 0.7), ("other", "b", 0.1), ("user", "a", 0.2)]):
        _store(tmp_path / "runs", i + 1, arm, 1, value, study=name)
    runs = study_runs(study)       # the other study's arm a, not its b nor this study's own a
    assert [(r.arm, r.finals["eval/top1"]) for r in runs] == [("a", 0.7)]
    assert "`a` = `other`'s `a`" in render_study(study, runs, None, None)
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
