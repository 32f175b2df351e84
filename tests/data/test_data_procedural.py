"""Procedural long-range sets: oracle ceilings, chance-by-construction labels, determinism, shards."""
from __future__ import annotations

import numpy as np
import pytest

from lvmae import registry
from lvmae.components.data.datasets.cue_probe import CueProbe
from lvmae.components.data.datasets.digit_sum import DigitSum
from lvmae.components.data.datasets.procedural import window_fraction
from lvmae.components.data.reading.loader import make_loader
from lvmae.components.data.reading.reader import ClipStream


def small(cls, tmp_path, **kwargs):
    return cls(root=str(tmp_path), train_samples=12, val_samples=8, samples_per_shard=5, **kwargs)


@pytest.mark.parametrize("cls", [CueProbe, DigitSum])
def test_contiguous_32_frames_is_at_chance_and_full_clip_sees_everything(tmp_path, cls):
    dataset = small(cls, tmp_path)
    short = dataset.oracle_ceiling(32, 1, clips=200)
    assert short["seen_fraction"] == 0.0 and short["ceiling"] == pytest.approx(1 / dataset.num_classes)
    full = dataset.oracle_ceiling(128, 1, clips=50)
    assert full["seen_fraction"] == 1.0 and full["ceiling"] == 1.0


def test_strided_sampler_ceiling_lies_between():
    """32 frames at stride 4 sometimes catches both 2-frame flashes: chance < ceiling < 1."""
    ceiling = CueProbe(root="unused").oracle_ceiling(32, 4, clips=300)
    assert 0.25 < ceiling["ceiling"] < 1.0
    assert ceiling["ceiling"] == pytest.approx(ceiling["seen_fraction"] + (1 - ceiling["seen_fraction"]) / 4)


def test_window_fraction_counts_windows_exactly():
    # Events at frames [0, 1) and [9, 10) of a 10-frame clip: only the window starting at 0
    # with span 10 sees both; with span 5 none does; with stride 3 (0, 3, 6, 9) it does.
    assert window_fraction([(0, 1), (9, 10)], 10, 10, 1) == 1.0
    assert window_fraction([(0, 1), (9, 10)], 10, 5, 1) == 0.0
    assert window_fraction([(0, 1), (9, 10)], 10, 4, 3) == 1.0
    assert window_fraction([(0, 1), (5, 6)], 10, 3, 1, start="random") == 0.0
    assert window_fraction([(2, 3)], 10, 3, 1) == pytest.approx(3 / 8)


def test_cue_probe_label_is_chance_without_either_event(tmp_path):
    """For any fixed cue, every probe colour gives a different label (and vice versa): a model
    that misses one flash faces a uniform label."""
    dataset = small(CueProbe, tmp_path)
    colours = dataset.num_classes
    for cue in range(colours):
        assert sorted((probe - cue) % colours for probe in range(colours)) == list(range(colours))
    plans = list(dataset.plans("train", 400))
    assert all(p["label"] == (p["probe"] - p["cue"]) % colours for p in plans)
    # The cue alone is uninformative in the data too: each cue colour meets every label.
    for cue in range(colours):
        assert {p["label"] for p in plans if p["cue"] == cue} == set(range(colours))


def test_digit_sum_label_is_sum_mod_10(tmp_path):
    plans = list(small(DigitSum, tmp_path).plans("train", 200))
    assert all(p["label"] == sum(p["digits"]) % 10 for p in plans)
    # One segment per digit: event k lies in segment k.
    segment = 128 // 4
    assert all(k * segment <= s and e <= (k + 1) * segment for p in plans for k, (s, e) in enumerate(p["events"]))


@pytest.mark.parametrize("cls", [CueProbe, DigitSum])
def test_events_are_visible_in_the_pixels(tmp_path, cls):
    """Rendering honours the plan: event frames differ from the noise-only background."""
    dataset = small(cls, tmp_path, distractors=0)
    plan = next(dataset.plans("train", 1))
    clip = dataset.render(plan).astype(np.float64)
    quiet = [t for t in range(128) if not any(s <= t < e for s, e in plan["events"])]
    peak = lambda t: np.abs(clip[t] - np.median(clip[quiet], axis=0)).max()
    assert all(peak(s) > 80 for s, _ in plan["events"])
    assert max(peak(t) for t in quiet[:20]) < 40


@pytest.mark.parametrize("name", ["dataset.cue_probe", "dataset.digit_sum"])
def test_written_shards_are_deterministic_and_read_back(tmp_path, name):
    first = registry.build(name, root=str(tmp_path / "a"), clip_frames=32, train_samples=6, val_samples=4,
                           samples_per_shard=4)
    manifest = first.prepare()
    assert manifest.splits["train"].samples == 6 and manifest.clip_frames == 32
    assert manifest.num_classes() == first.num_classes
    stream = ClipStream(manifest.urls("train"), train=False)
    read = {raw.key: raw for raw in stream.raw_samples()}
    assert len(read) == 6
    for i, (clip, label, events) in enumerate(first.clips("train")):
        raw = read[f"train_{i:06d}"]
        assert np.array_equal(raw.clip, clip) and raw.labels == {"label": label}
        assert raw.meta["events"] == [list(e) for e in events]
    batch = next(iter(make_loader(ClipStream(manifest.urls("val"), clip_frames=16, stride=2, train=False), 4)))
    assert batch["video"].shape == (4, 3, 16, 32, 32)
    assert first.prepare().splits == manifest.splits          # second call reuses the shards


def test_bad_parameters_are_named():
    with pytest.raises(ValueError, match="flash_frames"):
        CueProbe(flash_frames=40)
    with pytest.raises(ValueError, match="show_frames"):
        DigitSum(clip_frames=16, num_digits=8, show_frames=3)
