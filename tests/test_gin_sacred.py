"""gin ↔ Sacred: files and bindings given either way land in the run config as a nested dict;
bad input fails before a run starts and names the culprit."""
from __future__ import annotations

import pytest

from lvmae.experiments.engine import gin_config
from tests.cli import run_cli

TINY = "gin/experiments/tiny_cpu.gin"


def test_resolved_bindings_are_nested_without_dots():
    gin_config.parse([TINY], ["masking.decoder.random.budget = 0.2"])
    resolved = gin_config.resolved_bindings()
    assert resolved["bindings"]["masking"]["decoder"]["random"]["budget"] == 0.2
    assert resolved["bindings"]["experiments"]["pretrain_loop"]["model"] == "@model.mae()"
    assert resolved["macros"]["CLIP_FRAMES"] == 16

    def keys(tree):
        for key, value in tree.items():
            yield key
            if isinstance(value, dict):
                yield from keys(value)
    assert not [k for k in keys(resolved) if "." in k or k.startswith("$")]


def test_scoped_bindings_go_under_scopes():
    gin_config.parse([], ["eval/masking.encoder.tube.keep_ratio = 0.5"])
    resolved = gin_config.resolved_bindings()
    assert resolved["bindings"]["scopes"]["eval"]["masking"]["encoder"]["tube"]["keep_ratio"] == 0.5


@pytest.mark.parametrize("binding, culprit, hint", [
    ("no_such_component.x = 1", "no_such_component", None),
    ("pretrain_loop.model = @model.mea()", "model.mea", "model.mae"),
    ("masking.encoder.tbe.keep_ratio = 0.1", "masking.encoder.tbe", "masking.encoder.tube"),
    ("masking.encoder.tube.keep_ration = 0.1", "keep_ration", "keep_ratio"),
])
def test_bad_bindings_raise_naming_the_culprit(binding, culprit, hint):
    with pytest.raises(gin_config.GinConfigError) as error:
        gin_config.parse([TINY], [binding])
    assert culprit in str(error.value) and binding in str(error.value)
    if hint:
        assert f"Did you mean: {hint}" in str(error.value)


def test_missing_gin_file_is_named():
    with pytest.raises(gin_config.GinConfigError, match="gin file not found: 'gin/nope.gin'"):
        gin_config.parse(["gin/nope.gin"], [])


@pytest.mark.slow                                # a run.py subprocess each (seconds to tens)
@pytest.mark.parametrize("extra, culprit", [
    (["-b", "no_such_component.x=1"], "no_such_component"),
    (["-b", "pretrain_loop.model=@model.mea()"], "model.mea"),
    (["-g", "gin/does_not_exist.gin"], "gin/does_not_exist.gin"),
])
def test_cli_fails_before_the_run_starts(tmp_path, extra, culprit):
    result = run_cli(["pretrain", "-g", TINY, *extra], tmp_path / "runs")
    assert result.returncode != 0
    assert culprit in result.stderr
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").glob("[0-9]*"))


@pytest.mark.slow
def test_cli_typo_suggests_the_right_name(tmp_path):
    result = run_cli(["pretrain", "-g", TINY, "-b", "pretrain_loop.model=@model.mea()"], tmp_path / "runs")
    assert result.returncode != 0 and "Did you mean: model.mae" in result.stderr


@pytest.mark.slow
def test_short_options_and_sacred_config_are_equivalent(tmp_path):
    short = run_cli(["print_config", "-g", TINY, "-b", "masking.decoder.random.budget=0.3",
                     "with", "seed=1"], tmp_path)
    sacred = run_cli(["print_config", "with", "seed=1", f"gin_files=['{TINY}']",
                      "gin_bindings=['masking.decoder.random.budget=0.3']"], tmp_path)
    assert short.returncode == 0 and sacred.returncode == 0, short.stderr + sacred.stderr
    assert "budget = 0.3" in short.stdout
    assert short.stdout == sacred.stdout


@pytest.mark.slow
def test_list_prints_every_kind_name_and_parameter(tmp_path):
    result = run_cli(["list"], tmp_path / "runs")
    assert result.returncode == 0, result.stderr
    for expected in ["backbone", "masking.encoder.tube(keep_ratio=0.1)", "masking.decoder.random(budget=0.15)",
                     "target.pixels(norm_pix=True", "dataset.synthetic_motion("]:
        assert expected in result.stdout
    assert not (tmp_path / "runs").exists()
