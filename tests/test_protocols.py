"""gin/protocols/{ssv2,k400,diving48,ek100}.gin through ``run.py probe`` at tiny size, on shards
the writer makes in each benchmark's own annotation format (tests/benchmark_shards.py): the run
completes and records every probe of the protocol's grid for every label head. Only sizes and
budgets are overridden (frames, pixels, encoder width, steps); the grid, segments, views,
strides and layers are the protocol's."""
from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import gin
import pytest

from lvmae.components.data.formats.manifest import load_manifest
from lvmae.experiments.engine.preflight import PreflightError, preflight
from tests.benchmark_shards import FORMATS, write_benchmark
from tests.cli import run_cli

ROOT = Path(__file__).resolve().parents[1]
BENCHMARKS = tuple(FORMATS)
# What each protocol must set (V-JEPA 2's configs/eval/vitl/*.yaml): frames, stride or fps,
# segments × views, probe depth, lrs × weight decays, layers.
EXPECTED = {
    "ssv2": {"CLIP_FRAMES": 16, "data_pipeline.stride": 4, "probe_loop.segments": 2, "probe_loop.views": 3,
             "probe_grid.lrs": 5, "probe_grid.weight_decays": 4, "probe_loop.out_layers": (-1,)},
    "k400": {"CLIP_FRAMES": 16, "data_pipeline.stride": 4, "probe_loop.segments": 8, "probe_loop.views": 3,
             "probe_grid.lrs": 5, "probe_grid.weight_decays": 4, "probe_loop.out_layers": (-1,)},
    "diving48": {"CLIP_FRAMES": 32, "data_pipeline.stride": 2, "probe_loop.segments": 4, "probe_loop.views": 3,
                 "probe_grid.lrs": 3, "probe_grid.weight_decays": 1, "probe_loop.out_layers": (-7, -5, -3, -1)},
    "ek100": {"CLIP_FRAMES": 32, "data_pipeline.fps": 8.0, "probe_loop.segments": 1, "probe_loop.views": 1,
              "probe_grid.lrs": 5, "probe_grid.weight_decays": 4, "probe_loop.out_layers": (-1,)},
}
# A tiny encoder deep enough for Diving48's layers (−7 … −1), 4 frames of 32² as 4 tokens, 2 steps.
TINY = ["CLIP_FRAMES = 4", "IMAGE_SIZE = 32", "TUBELET = (4, 16, 16)", "ENCODER = @backbone.vit()",
        "backbone.vit.clip_frames = %CLIP_FRAMES", "backbone.vit.image_size = %IMAGE_SIZE",
        "backbone.vit.tubelet = %TUBELET", "backbone.vit.dim = 32", "backbone.vit.depth = 8",
        "backbone.vit.heads = 2", "probe_loop.pretrained = None", "probe_loop.steps = 2",
        "probe_loop.batch_size = 8", "probe_loop.select_fraction = 0.5", "data_pipeline.workers = 0"]
# One thread: tensors this small run 3× faster without intra-op threads competing for 2 cores.
ONE_THREAD = {"OMP_NUM_THREADS": "1"}


@pytest.fixture(scope="module")
def manifests(tmp_path_factory) -> dict[str, str]:
    """benchmark → manifest path, written once for the module."""
    root = tmp_path_factory.mktemp("benchmarks")
    return {name: write_benchmark(name, str(root / name)) for name in BENCHMARKS}


def _bindings(path: Path) -> dict[str, str]:
    """``name = value`` lines of a gin file (comments dropped)."""
    lines = (line.split("#")[0].strip() for line in path.read_text().splitlines())
    return dict(line.split(" = ", 1) for line in lines if " = " in line)


@pytest.mark.parametrize("benchmark", BENCHMARKS)
def test_each_protocol_sets_v_jepa_2s_settings(benchmark):
    bound = _bindings(ROOT / "gin" / "protocols" / f"{benchmark}.gin")
    for name, expected in EXPECTED[benchmark].items():
        value = ast.literal_eval(bound[name])
        assert (len(value) if name.startswith("probe_grid.") else value) == expected, name
    assert bound["probe_grid.attentive_depth"] == "4" and bound["IMAGE_SIZE"] == "256"
    assert bound["probe_loop.dataset"] == "@protocol/dataset.manifest()"


def test_the_shards_are_in_each_benchmarks_format(manifests):
    heads = {name: load_manifest(path).heads for name, path in manifests.items()}
    assert list(heads["ek100"]) == ["verb", "noun"] and list(heads["ssv2"]) == ["label"]
    assert heads["diving48"]["label"][0] == "Back 15som 05Twis FREE"
    # SSv2's left/right classes: the manifest itself declares the flip unsafe.
    assert "flip" in load_manifest(manifests["ssv2"]).unsafe_augmentations
    assert all(not load_manifest(manifests[name]).unsafe_augmentations for name in ("k400", "diving48", "ek100"))


@pytest.mark.parametrize("benchmark", BENCHMARKS)
def test_protocol_runs_and_records_the_grid(benchmark, manifests, tmp_path):
    runs = tmp_path / "runs"
    result = run_cli(["probe", "-g", "gin/experiments/tiny_cpu.gin", "-g", f"gin/protocols/{benchmark}.gin",
                      "-b", f"MANIFEST = '{manifests[benchmark]}'", "-b", f"WORKDIR = '{tmp_path / 'work'}'",
                      *[arg for binding in TINY for arg in ("-b", binding)]], runs, timeout=600, env=ONE_THREAD)
    assert result.returncode == 0, result.stderr[-3000:]
    folder = runs / "1"
    run = json.loads((folder / "run.json").read_text())
    assert run["command"] == "probe" and run["status"] == "COMPLETED"
    assert "probe_heads.csv" in run["artifacts"]
    metrics = json.loads((folder / "metrics.json").read_text())
    grid = EXPECTED[benchmark]["probe_grid.lrs"] * EXPECTED[benchmark]["probe_grid.weight_decays"]
    label_heads = list(load_manifest(manifests[benchmark]).heads)
    for head in label_heads:
        recorded = [m for m in metrics if re.fullmatch(rf"probe/{head}/[^/]+/report_top1", m)]
        assert len(recorded) == grid, (head, sorted(metrics))
    if benchmark == "ek100":     # verb and noun probes; action = both right
        assert {"eval/verb/top1", "eval/noun/top1", "eval/action/top1"} <= set(metrics)
    config = json.loads((folder / "config.json").read_text())["gin"]["bindings"]["experiments"]
    assert config["probe_loop"]["segments"] == EXPECTED[benchmark]["probe_loop.segments"]
    assert config["probe_loop"]["views"] == EXPECTED[benchmark]["probe_loop.views"]


def test_a_flip_on_ssv2_is_refused_naming_binding_and_manifest(manifests, tmp_path, monkeypatch):
    """Preflight (what run.py runs before recording; exit 2 is tested in test_data_label_safety)."""
    monkeypatch.chdir(ROOT)
    bindings = [f"MANIFEST = '{manifests['ssv2']}'", f"WORKDIR = '{tmp_path / 'work'}'", *TINY,
                "data_pipeline.flip = True"]
    try:
        with pytest.raises(PreflightError) as refused:
            preflight("probe", ["gin/experiments/tiny_cpu.gin", "gin/protocols/ssv2.gin"], bindings)
    finally:
        gin.clear_config()
    message = str(refused.value)
    assert f"data_pipeline.flip = True is refused for dataset.manifest ({manifests['ssv2']}) (probe_loop.dataset)" in message
    assert "Pushing something from left to right" in message
