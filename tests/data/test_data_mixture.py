"""dataset.mixture: clips drawn from each source in proportion to its weights, each source with
its own clip sampling, deterministic for a seed and resumed at the same position."""
from __future__ import annotations

import math
from itertools import islice

import numpy as np
import pytest
import torch
from test_data_pipeline import _FakeRun, write_set

from lvmae.components.data.datasets.mixture import MixtureDataset
from lvmae.components.data.reading.pipeline import DataPipeline, record_skips

WEIGHTS = [0.7, 0.3]
CLIPS, BATCH = 2000, 8
SOURCE_LENGTHS = {"a": 12, "b": 5}     # b's clips are shorter than the window: its own short policy


def _source(folder, prefix: str, count: int):
    frames = SOURCE_LENGTHS[prefix]
    clips = []
    for i in range(count):
        clip = np.zeros((frames, 8, 8, 3), dtype=np.uint8)
        clip[..., 0] = i
        clip[..., 1] = np.arange(frames)[:, None, None]
        clips.append((f"{prefix}{i:02d}", clip, frames))
    return write_set(folder, clips, per_shard=6)


@pytest.fixture(scope="module")
def mixture(tmp_path_factory):
    root = tmp_path_factory.mktemp("mix")
    plain = dict(clip_frames=6, size=8, workers=0, shuffle_buffer=4, mean=(0, 0, 0), std=(1, 1, 1), flip=False)
    return MixtureDataset([_source(root / "a", "a", 24), _source(root / "b", "b", 12)], WEIGHTS,
                          [DataPipeline(stride=2, **plain), DataPipeline(short_policy="pad", **plain)])


def _loader(mixture, seed=5):
    return DataPipeline(clip_frames=6, size=8, workers=0).loader(mixture, "train", batch_size=BATCH, seed=seed)


def test_a_two_dataset_mix_draws_its_weights_and_resumes_at_the_same_position(mixture):
    loader = _loader(mixture)
    batches = list(islice(loader, CLIPS // BATCH))
    keys = [k for batch in batches for k in batch["key"]]
    counts = {name: sum(k.startswith(name) for k in keys) for name in "ab"}
    for name, weight in zip("ab", WEIGHTS):
        standard_error = math.sqrt(CLIPS * weight * (1 - weight))
        assert abs(counts[name] - CLIPS * weight) < 3 * standard_error, counts
    print(f"mixture draws over {CLIPS} clips: {counts} (weights {WEIGHTS})")
    assert list(loader.drawn.values()) == [counts["a"], counts["b"]]
    assert {tuple(b["video"].shape) for b in batches} == {(BATCH, 3, 6, 8, 8)}
    # Each source samples its own way: a at stride 2 (green 0, 2, 4 …), b padded from 5 frames.
    green = {k: (b["video"][i, 1, :, 0, 0] * 255).round().long().tolist()
             for b in batches[:20] for i, k in enumerate(b["key"])}
    assert {k[0] for k in green} == {"a", "b"}
    assert all(np.diff(g).tolist() == [2] * 5 for k, g in green.items() if k.startswith("a"))
    assert all(g == [0, 1, 2, 3, 4, 4] for k, g in green.items() if k.startswith("b"))
    # Deterministic for the seed; resumed at batch 100, the next batches are the uninterrupted ones.
    again = _loader(mixture)
    first = [b["key"] for b in islice(again, 100)]
    assert first == [b["key"] for b in batches[:100]]
    resumed = _loader(mixture)
    resumed.load_state_dict(again.state_dict())
    rest = list(islice(resumed, 20))
    assert [b["key"] for b in rest] == [b["key"] for b in batches[100:120]]
    assert all(torch.equal(r["video"], b["video"]) for r, b in zip(rest, batches[100:120]))
    assert [b["key"] for b in islice(_loader(mixture, seed=6), 3)] != [b["key"] for b in batches[:3]]
    run = _FakeRun()
    record_skips(run, loader)
    assert run.info["data_drawn"] == loader.drawn


def test_every_source_must_give_the_commands_clip_shape(mixture):
    with pytest.raises(ValueError, match=r"source 0 .* gives 6 frames at 8², the command's data_pipeline 4 at 8²"):
        DataPipeline(clip_frames=4, size=8, workers=0).loader(mixture, "train", batch_size=2)
    with pytest.raises(ValueError, match="weights must be 2 positive numbers"):
        MixtureDataset(mixture.sources, [1.0, 0.0])
    with pytest.raises(ValueError, match="mixture of datasets is for training"):
        DataPipeline(clip_frames=6, size=8, workers=0).loader(mixture, "train", mode="eval", batch_size=2)


def test_fine_tuning_on_a_mixture_reports_the_eval_dataset_it_names(mixture):
    from lvmae.components.data.formats.manifest import load_manifest
    from lvmae.experiments.commands.finetune import evaluation_manifest

    mixed = mixture.prepare()
    classes = {"label": 3}
    with pytest.raises(ValueError, match=r"finetune_loop\.dataset is a dataset\.mixture.*finetune_loop\.eval_dataset"):
        evaluation_manifest(mixed, None, classes)

    class Named:      # a dataset whose prepare() gives a source's manifest
        def __init__(self, manifest):
            self.manifest = manifest

        def prepare(self):
            return self.manifest
    source = load_manifest(mixture.sources[0])
    assert evaluation_manifest(mixed, Named(source), classes) is source
    with pytest.raises(ValueError, match=r"eval_dataset has label heads \{'label': 3\}.*trained on \{'label': 2\}"):
        evaluation_manifest(mixed, Named(source), {"label": 2})
