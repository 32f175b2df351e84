"""The data pipeline: one batch shape from clips of any length and size, evaluation views,
exact resumption without re-decoding, skip counts, and precomputed fields that stay aligned
with the pixels."""
from __future__ import annotations

import json
import os
from itertools import islice

import numpy as np
import pytest
import torch
from einops import rearrange, reduce
from video_fixtures import moving_clip

from lvmae.components.data.decoding.codec import encode_mp4
from lvmae.components.data.formats.manifest import FrameStats, Manifest, Split, View, save_manifest
from lvmae.components.data.formats.schema import make_sample, npy_bytes, parse_sample
from lvmae.components.data.reading.batch_streams import write_shards
from lvmae.components.data.reading.pipeline import DataPipeline, EmptyPipelineError, record_skips

MEAN, STD = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)


def write_set(folder, clips: list[tuple[str, np.ndarray | bytes, int]], per_shard: int = 4,
              fields: list[str] | None = None, view: View | None = None, extra=None) -> str:
    """Shards + manifest of (key, clip, num_frames) samples; returns the manifest path."""
    def generate():
        for i, (key, clip, frames) in enumerate(clips):
            sample = make_sample(key, clip, {"label": i % 3}, 25.0, frames, (0, 0))
            if extra is not None:
                extra(sample, i)
            yield sample
    count = write_shards(generate(), str(folder), "train", per_shard)
    manifest = Manifest(name="t", splits={"train": Split(f"train-{{000000..{count - 1:06d}}}.tar", len(clips),
                                                         FrameStats())},
                        heads={"label": ["a", "b", "c"]}, codec="mp4", fields=fields or [],
                        view=view or View())
    path = os.path.join(folder, "manifest.yaml")
    save_manifest(manifest, path)
    return path


@pytest.fixture(scope="module")
def mixed(tmp_path_factory):
    """mp4 clips of 5–40 frames, landscape, portrait and square, one corrupt."""
    folder = tmp_path_factory.mktemp("mixed")
    shapes = [(40, 32, 48), (12, 48, 32), (25, 24, 24), (5, 32, 64), (33, 40, 24), (18, 32, 48)]
    clips = [(f"c{i}", encode_mp4(moving_clip(t, h, w, seed=i), 25.0, gop=8), t) for i, (t, h, w) in enumerate(shapes)]
    broken = encode_mp4(moving_clip(16, 32, 32, seed=9), 25.0, gop=8)
    clips.append(("broken", broken[: len(broken) // 2], 16))
    return write_set(folder, clips, per_shard=3)


def test_every_batch_has_one_shape_from_mixed_footage(mixed):
    pipeline = DataPipeline(clip_frames=8, stride=2, size=16, workers=0, mean=MEAN, std=STD)
    loader = pipeline.loader(mixed, "train", batch_size=2, seed=1)
    batches = [batch for batch in islice(loader, 6)]
    assert {tuple(b["video"].shape) for b in batches} == {(2, 3, 8, 16, 16)}
    assert all(b["views"] == 1 and b["label"].shape == (2,) for b in batches)


def test_evaluation_views_are_rows_of_each_sample(mixed):
    pipeline = DataPipeline(clip_frames=4, size=16, resize=20, temporal_views=2, spatial_views=3,
                            workers=0, mean=MEAN, std=STD)
    loader = pipeline.loader(mixed, "train", mode="eval", batch_size=4)
    batches = list(loader)
    keys = [k for b in batches for k in b["key"]]
    assert sorted(keys) == [f"c{i}" for i in range(6)]          # every good sample once
    assert loader.skipped == {"corrupt": 1, "short": 0}
    for batch in batches:
        assert batch["views"] == 6 and batch["video"].shape == (6 * len(batch["key"]), 3, 4, 16, 16)
    views = rearrange(batches[0]["video"], "(b v) c t h w -> b v c t h w", v=6)
    assert not torch.equal(views[0, 0], views[0, 5])           # the views differ


def test_skip_policy_counts_short_clips_and_an_empty_pipeline_names_the_manifest(mixed, tmp_path):
    pipeline = DataPipeline(clip_frames=20, size=16, short_policy="skip", workers=0, mean=MEAN, std=STD)
    loader = pipeline.loader(mixed, "train", mode="eval", batch_size=8)
    keys = [k for b in loader for k in b["key"]]
    assert sorted(keys) == ["c0", "c2", "c4"]                   # 40, 25, 33 frames; others < 20
    assert loader.skipped == {"corrupt": 0, "short": 4}
    runs = _FakeRun()
    assert record_skips(runs, loader) == {"corrupt": 0, "short": 4}
    assert runs.info["data_skipped"] == {"corrupt": 0, "short": 4}
    assert ("data/skipped_short", 4, 0) in runs.points
    too_long = DataPipeline(clip_frames=64, size=16, short_policy="skip", workers=0)
    with pytest.raises(EmptyPipelineError, match="manifest.yaml"):
        next(iter(too_long.loader(mixed, "train", batch_size=2)))


class _FakeRun:
    def __init__(self):
        self.info, self.points, self.artifacts = {}, [], {}

    def log_scalar(self, name, value, step):
        self.points.append((name, value, step))

    def add_artifact(self, path, name):
        with open(path, encoding="utf-8") as handle:
            self.artifacts[name] = json.load(handle)


@pytest.fixture(scope="module")
def numbered(tmp_path_factory):
    """24 npy clips whose pixels encode (sample, frame)."""
    folder = tmp_path_factory.mktemp("numbered")
    clips = []
    for i in range(24):
        clip = np.zeros((12, 8, 8, 3), dtype=np.uint8)
        clip[..., 0] = i
        clip[..., 1] = np.arange(12)[:, None, None]
        clips.append((f"s{i:02d}", clip, 12))
    return write_set(folder, clips, per_shard=5)


class CountingPipeline(DataPipeline):
    """Logs every decoded sample to a file (works across worker processes)."""

    def __init__(self, log_path: str, **options):
        super().__init__(**options)
        self.log_path = log_path

    def decode(self, sample, frame_idx, short_side=None):
        with open(self.log_path, "a") as handle:
            handle.write(sample.key + "\n")
        return super().decode(sample, frame_idx, short_side)


@pytest.mark.parametrize("workers", [0, 2])
def test_resumed_loader_yields_the_rest_without_decoding_consumed_samples(numbered, tmp_path, workers):
    options = dict(clip_frames=4, size=8, workers=workers, shuffle_buffer=4, mean=MEAN, std=STD)
    full = CountingPipeline(str(tmp_path / "full.log"), **options).loader(numbered, "train", batch_size=2, seed=3)
    reference = [(b["key"], b["video"]) for b in islice(full, 12)]   # 12 = one epoch, then more
    first = CountingPipeline(str(tmp_path / "first.log"), **options).loader(numbered, "train", batch_size=2, seed=3)
    consumed = [b["key"] for b in islice(first, 3)]
    state = first.state_dict()
    log_path = tmp_path / "resumed.log"
    resumed = CountingPipeline(str(log_path), **options).loader(numbered, "train", batch_size=2, seed=3)
    resumed.load_state_dict(state)
    rest = [(b["key"], b["video"]) for b in islice(resumed, 3)]
    assert consumed == [keys for keys, _ in reference[:3]]
    assert [keys for keys, _ in rest] == [keys for keys, _ in reference[3:6]]
    assert all(torch.equal(a, b) for (_, a), (_, b) in zip(rest, reference[3:6]))
    decoded_again = set(log_path.read_text().split()) & {k for keys in consumed for k in keys}
    assert not decoded_again, f"consumed samples decoded again after resuming: {decoded_again}"


def test_resume_refuses_another_layout(numbered):
    pipeline = DataPipeline(clip_frames=4, size=8, workers=0)
    loader = pipeline.loader(numbered, "train", batch_size=2, seed=3)
    next(iter(loader))
    other = pipeline.loader(numbered, "train", batch_size=4, seed=3)
    with pytest.raises(ValueError, match="batch_size"):
        other.load_state_dict(loader.state_dict())


def test_epochs_cover_every_sample_and_reshuffle(numbered):
    loader = DataPipeline(clip_frames=4, size=8, workers=0, shuffle_buffer=6).loader(
        numbered, "train", batch_size=3, seed=0)
    keys = [k for b in islice(loader, 16) for k in b["key"]]
    first, second = keys[:24], keys[24:48]
    assert sorted(first) == sorted(second) == [f"s{i:02d}" for i in range(24)]
    assert first != second


def test_fields_stay_aligned_with_the_pixels_through_flips(tmp_path):
    """Fields computed on the precompute view (here: the mean of each 4×4×2 cell) must equal
    the same function of the pixels the training batch carries, flipped or not."""
    pipeline = DataPipeline(clip_frames=4, size=16, resize=20, workers=0, mean=MEAN, std=STD)
    sources = [(f"f{i}", encode_mp4(moving_clip(10 + i, 24 + 8 * (i % 2), 32, seed=i), 25.0, gop=4), 10 + i)
               for i in range(6)]

    def cell_means(video_uint8_thwc: torch.Tensor) -> np.ndarray:
        return reduce(video_uint8_thwc.float()[..., 0], "(t a) (h b) (w c) -> t h w", "mean", a=2, b=4, c=4).numpy()

    def add_fields(sample, _):
        raw = parse_sample({"__key__": sample["__key__"], "__url__": "-", "json": json.dumps(sample["json"]).encode(),
                            "mp4": sample["mp4"]})
        view, pixels = pipeline.field_view(raw)
        sample["json"]["view"] = view.as_json()
        stored[sample["__key__"]] = cell_means(torch.from_numpy(pixels))
        sample["scores.npy"] = npy_bytes(stored[sample["__key__"]])

    stored = {}

    path = write_set(tmp_path, sources, fields=["scores"], view=View(frames=4, grid=[2, 4, 4]), extra=add_fields)
    loader = pipeline.loader(path, "train", batch_size=2, seed=5)
    flips = 0
    for batch in islice(loader, 6):
        pixels = batch["video"] * torch.tensor(STD).view(3, 1, 1, 1) + torch.tensor(MEAN).view(3, 1, 1, 1)
        pixels = rearrange(pixels * 255, "b c t h w -> b t h w c").round()
        for i in range(2):
            expected = cell_means(pixels[i])
            assert np.allclose(batch["scores"][i].numpy(), expected, atol=1.0), batch["key"][i]
            flips += np.array_equal(batch["scores"][i].numpy(), stored[batch["key"][i]][..., ::-1])
    assert 0 < flips < 12     # both flipped and unflipped samples were checked


def test_oracle_ceiling_uses_the_pipelines_sampler():
    from lvmae.components.data.datasets.cue_probe import CueProbe
    from lvmae.experiments.commands.data_commands import oracle_ceiling_job
    dataset = CueProbe(root="unused")
    table = oracle_ceiling_job(dataset=dataset, samplers=[], clips=100,
                               pipeline=DataPipeline(clip_frames=32, stride=4))
    assert table["data_pipeline train"] == dataset.oracle_ceiling(32, 4, start="random", clips=100)
    assert table["data_pipeline eval"] == dataset.oracle_ceiling(32, 4, start="center", clips=100)
    assert table["data_pipeline train"] != table["data_pipeline eval"]


def test_a_damaged_tar_is_counted_when_read(numbered, tmp_path):
    """A shard cut short (a copy interrupted mid-way): the samples before the cut are read, the
    damage is counted as corrupt, and the pass goes on to the next shard."""
    import shutil
    folder = tmp_path / "cut"
    shutil.copytree(os.path.dirname(numbered), folder)
    first = folder / "train-000000.tar"
    data = first.read_bytes()
    first.write_bytes(data[: len(data) * 2 // 3])
    loader = DataPipeline(clip_frames=4, size=8, workers=0).loader(str(folder / "manifest.yaml"), "train",
                                                                   mode="eval", batch_size=4)
    keys = [k for batch in loader for k in batch["key"]]
    assert loader.skipped["corrupt"] >= 1
    assert {f"s{i:02d}" for i in range(5, 24)} <= set(keys) and len(keys) < 24


def test_frames_are_scaled_down_as_they_are_decoded():
    """A decode with short_side never returns full-size frames: (h, w) follows the short side,
    aspect kept, and the picture is the full decode area-averaged (4:4:4 chroma, so only the
    scaling differs)."""
    from lvmae.components.data.decoding.codec import PyAVDecoder
    data = encode_mp4(moving_clip(12, 64, 96, seed=4), 25.0, gop=4, pix_fmt="yuv444p")
    full = PyAVDecoder().decode(data, [3, 7])
    small = PyAVDecoder().decode(data, [3, 7], short_side=16)
    assert full.shape == (2, 64, 96, 3) and small.shape == (2, 16, 24, 3)
    area = torch.nn.functional.avg_pool2d(torch.from_numpy(full).permute(0, 3, 1, 2).float(), 4)
    assert (area - torch.from_numpy(small).permute(0, 3, 1, 2).float()).abs().mean() < 2.0
    assert PyAVDecoder().decode(data, [3], short_side=128).shape == (1, 64, 96, 3)   # never scaled up
    assert DataPipeline(size=112).train_short_side == 205     # 112 · √((4/3) / 0.4)


def test_each_rank_resumes_its_own_readers_from_a_merged_state(numbered):
    """2 ranks × 2 workers: rank 1 resumed from the merged state continues exactly where it was."""
    from lvmae.components.data.reading.pipeline import merge_states
    pipeline = DataPipeline(clip_frames=4, size=8, workers=2, shuffle_buffer=4)
    ranks = [pipeline.loader(numbered, "train", batch_size=2, seed=1, rank=r, world_size=2) for r in (0, 1)]
    iterators = [iter(loader) for loader in ranks]
    for _ in range(3):
        for iterator in iterators:
            next(iterator)
    merged = merge_states([loader.state_dict() for loader in ranks])
    rank0_only = ranks[0].state_dict()
    expected = [next(iterator)["key"] for iterator in iterators]
    resumed = pipeline.loader(numbered, "train", batch_size=2, seed=1, rank=1, world_size=2)
    resumed.load_state_dict(merged)
    assert next(iter(resumed))["key"] == expected[1]
    assert set(resumed.positions) == {2, 3}                 # rank 1's readers only
    # Given only rank 0's state (no skips here), rank 1 derives its position from the batch count.
    derived = pipeline.loader(numbered, "train", batch_size=2, seed=1, rank=1, world_size=2)
    derived.load_state_dict(rank0_only)
    assert next(iter(derived))["key"] == expected[1]


def test_a_split_smaller_than_a_batch_still_trains_and_fewer_samples_than_readers_is_an_error(mixed, numbered):
    loader = DataPipeline(clip_frames=4, size=8, workers=2, max_skip_fraction=0.2).loader(mixed, "train", batch_size=8, seed=0)
    batches = list(islice(loader, 3))
    assert all(b["video"].shape == (8, 3, 4, 8, 8) for b in batches)
    with pytest.raises(EmptyPipelineError, match=r"manifest\.yaml.*24 samples cannot feed 32 readers"):
        DataPipeline(clip_frames=4, size=8, workers=16).loader(numbered, "train", batch_size=2, world_size=2)


def test_evaluation_windows_and_crops_spread_from_first_to_last():
    from lvmae.components.data.reading.augment import short_side_boxes
    from lvmae.components.data.reading.temporal import TemporalSampler
    sampler = TemporalSampler(16, 1, "center")
    assert [w[0] for w in sampler.windows(32, 1)] == [8]                       # centred
    assert [w[0] for w in sampler.windows(32, 3)] == [0, 8, 16]                # first to last
    boxes = short_side_boxes(12, 16, size=12, resize=12, count=3)
    assert [(b.top, b.left, b.height) for b in boxes] == [(0, 0, 12), (0, 2, 12), (0, 4, 12)]
    portrait = short_side_boxes(20, 10, size=8, resize=10, count=1)[0]         # crop 8 of 10 source px
    assert (portrait.top, portrait.left, portrait.height, portrait.width) == (6, 1, 8, 8)


@pytest.mark.parametrize("module", ["lvmae.components.data.pipeline", "lvmae.components.data.reading.pipeline"])
def test_a_checkpoints_stored_config_naming_data_pipeline_by_either_module_parses(module):
    """Checkpoints store the operative config with full selectors: data_pipeline's written before
    and while components/data was rearranged both re-parse (checkpoint_model.parse_stored_config)."""
    import gin

    from lvmae.experiments.engine.checkpoint_model import parse_stored_config
    parse_stored_config({"gin_config": f"{module}.data_pipeline.clip_frames = 7\n"}, "a checkpoint")
    try:
        assert DataPipeline(workers=0).clip_frames == 7
    finally:
        gin.clear_config()
