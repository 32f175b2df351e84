"""``precompute``: frozen tokenizer + scorer window by window into new shards, read back by the
MAE's reader; the adaptive plan on a precomputed batch is the top-k of the stored scores
(among encoder-masked tokens) plus a random part; the live scorer slot of ``model.mae``."""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import gin
import numpy as np
import pytest
import torch
from einops import rearrange

from lvmae import registry
from lvmae.components.data.formats.manifest import load_manifest
from lvmae.components.data.reading.batch_streams import to_video_tensor
from lvmae.components.data.reading.pipeline import DataPipeline
from lvmae.components.data.reading.reader import ClipStream
from lvmae.experiments.commands.precompute import load_frozen_tokenizer, precompute_job, window_scores
from lvmae.experiments.engine import gin_config
from lvmae.experiments.engine.training import save_checkpoint

registry.discover()
CLIP_FRAMES = 32          # two 16-frame tokenizer windows per clip
TINY_TOKENIZER = "gin/tokenizers/fsq_magvit_tiny.gin"
PIPELINE = DataPipeline(clip_frames=CLIP_FRAMES, size=32, workers=0)     # the 32² clips as stored


@pytest.fixture(autouse=True)
def _clean_gin():
    gin.clear_config()
    yield
    gin.clear_config()


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A random-weight tiny tokenizer checkpoint, a 32-frame source set and its precompute."""
    root = tmp_path_factory.mktemp("precompute")
    gin_config.parse([TINY_TOKENIZER], ["TOKENIZER_CHANNELS = 3"])
    torch.manual_seed(0)
    model = registry.build("model.adaptive_tokenizer")
    gin.clear_config()
    checkpoint = str(root / "tokenizer" / "last.pt")
    save_checkpoint(checkpoint, {"model": model.state_dict(), "tokenizer_config": model.config(), "step": 3})
    source = registry.build("dataset.synthetic_motion", root=str(root / "data"), clip_frames=CLIP_FRAMES,
                            image_size=32, train_samples=6, val_samples=3, samples_per_shard=4)
    manifest = source.prepare()
    before = _digests(Path(manifest.root))
    out_dir = str(root / "pre")
    result = precompute_job(pipeline=PIPELINE, checkpoint=checkpoint, dataset=source, out_dir=out_dir, progress=False)
    return {"root": root, "checkpoint": checkpoint, "source": source, "manifest": manifest,
            "before": before, "out_dir": out_dir, "result": result}


def _digests(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def test_source_shards_are_untouched_and_every_clip_gets_fields(setup):
    assert _digests(Path(setup["manifest"].root)) == setup["before"]
    written = load_manifest(setup["result"]["manifest"])
    assert written.fields == ["indices", "latents", "scores"]
    assert written.view.frames == CLIP_FRAMES and list(written.view.grid) == [16, 8, 8]
    assert setup["result"]["clips"] == 9
    stream = ClipStream.from_manifest(written, "train", train=False)
    assert sum(1 for _ in stream.raw_samples()) == 6


def test_fields_equal_the_frozen_tokenizer_window_by_window(setup):
    written = load_manifest(setup["result"]["manifest"])
    frozen, _ = load_frozen_tokenizer(setup["checkpoint"])
    frozen.scorer.first_frame = "next"
    sample = next(ClipStream.from_manifest(written, "val", train=False).raw_samples())
    video = to_video_tensor(sample.clip[:CLIP_FRAMES])[None]
    with torch.no_grad():
        latents, indices = frozen.tokenizer.encode_windows(video)
        scores = window_scores(frozen, video)
        second = frozen.scorer(video[:, :, 16:])               # the second window, alone
    assert sample.fields["latents"].dtype == np.float16
    np.testing.assert_allclose(sample.fields["latents"].astype(np.float32), latents[0].numpy(), atol=1e-3)
    np.testing.assert_array_equal(sample.fields["indices"], indices[0].numpy())
    np.testing.assert_allclose(sample.fields["scores"], scores[0].numpy(), rtol=1e-5, atol=1e-6)
    # Window policy: each window's first latent frame copies its second (first_frame='next').
    np.testing.assert_allclose(sample.fields["scores"][8], sample.fields["scores"][9])
    np.testing.assert_allclose(sample.fields["scores"][8:], second[0].numpy(), rtol=1e-5, atol=1e-6)


def test_rerun_resumes_but_refuses_other_settings_or_the_source_folder(setup):
    again = precompute_job(pipeline=PIPELINE, checkpoint=setup["checkpoint"], dataset=setup["source"],
                           out_dir=setup["out_dir"], progress=False)
    assert again["clips"] == 0                                  # every shard already there
    with pytest.raises(ValueError, match="out_dir.*holds fields computed with"):
        precompute_job(pipeline=PIPELINE, checkpoint=setup["checkpoint"], dataset=setup["source"], out_dir=setup["out_dir"],
                       first_frame="max", progress=False)
    with pytest.raises(ValueError, match="source dataset's folder"):
        precompute_job(pipeline=PIPELINE, checkpoint=setup["checkpoint"], dataset=setup["source"],
                       out_dir=setup["manifest"].root, progress=False)
    with pytest.raises(ValueError, match="view_frames must be a positive multiple"):
        precompute_job(pipeline=PIPELINE, checkpoint=setup["checkpoint"], dataset=setup["source"],
                       out_dir=str(setup["root"] / "other"), view_frames=24, progress=False)
    with pytest.raises(FileNotFoundError, match="pretrain_tokenizer"):
        precompute_job(pipeline=PIPELINE, checkpoint=str(setup["root"] / "missing.pt"), dataset=setup["source"],
                       out_dir=str(setup["root"] / "other"), progress=False)
    assert json.loads((Path(setup["out_dir"]) / "precompute.json").read_text())["first_frame"] == "next"


def test_a_retrained_checkpoint_at_the_same_path_and_step_is_refused(setup, tmp_path):
    state = torch.load(setup["checkpoint"], weights_only=True)
    state["model"] = {k: v + 1 if v.is_floating_point() else v for k, v in state["model"].items()}
    other = tmp_path / "last.pt"
    torch.save(state, setup["checkpoint"] + ".retrained")
    try:
        os.replace(setup["checkpoint"], str(other))
        os.replace(setup["checkpoint"] + ".retrained", setup["checkpoint"])
        with pytest.raises(ValueError, match="weights_sha256"):
            precompute_job(pipeline=PIPELINE, checkpoint=setup["checkpoint"], dataset=setup["source"], out_dir=setup["out_dir"],
                           progress=False)
    finally:
        os.replace(str(other), setup["checkpoint"])


def _tiny_mae(**kwargs):
    gin_config.parse(["gin/experiments/lvmae_cpu.gin"], ["CLIP_FRAMES = 32"])
    model = registry.build("model.mae", **kwargs)
    gin.clear_config()
    return model


def assert_adaptive_plan_follows_scores(model, batch: dict) -> None:
    """The plan's first ``top`` decoder targets are the best-scored encoder-masked tokens of
    ``batch["scores"]``; the rest are distinct, masked and not among them."""
    batch_size = batch["video"].shape[0]
    plan = model.plan(batch_size, torch.Generator().manual_seed(0), model.token_scores(batch))
    top, extra = model.decoder_masking.counts(plan.grid, plan.enc_keep_idx.shape[1])
    assert plan.dec_target_idx.shape[1] == top + extra and extra > 0
    flat = rearrange(batch["scores"], "b t h w -> b (t h w)")
    for row in range(batch_size):
        kept = set(plan.enc_keep_idx[row].tolist())
        masked = torch.tensor([i for i in range(plan.grid.n) if i not in kept])
        ranked = masked[flat[row, masked].argsort(descending=True)]
        chosen_top = plan.dec_target_idx[row, :top]
        # Equal as score multisets: 'next' copies scores, so ties may swap equal-scored tokens.
        assert torch.equal(flat[row, chosen_top].sort().values, flat[row, ranked[:top]].sort().values)
        assert len(set(chosen_top.tolist())) == top and not set(chosen_top.tolist()) & kept
        rest = set(plan.dec_target_idx[row, top:].tolist())
        assert len(rest) == extra and not rest & (kept | set(chosen_top.tolist()))


def _precomputed_batch(setup, size: int = 3) -> dict:
    written = load_manifest(setup["result"]["manifest"])
    return next(iter(PIPELINE.loader(written, "train", mode="eval", batch_size=size)))


def test_adaptive_plan_is_topk_of_stored_scores_plus_random_masked_tokens(setup):
    batch = _precomputed_batch(setup)
    assert batch["latents"].shape == (3, 4, 16, 8, 8) and batch["scores"].shape == (3, 16, 8, 8)
    model = _tiny_mae()
    assert_adaptive_plan_follows_scores(model, batch)
    losses, plan, _ = model(batch, torch.Generator().manual_seed(0))
    assert torch.isfinite(losses["loss"]) and losses["loss_tokens"] == plan.dec_target_idx.numel()


def test_token_id_targets_train_on_the_stored_indices(setup):
    batch = _precomputed_batch(setup)
    model = _tiny_mae(target=registry.build("target.token_ids", levels=(8, 5, 5, 5)))
    losses, _, _ = model(batch, torch.Generator().manual_seed(0))
    losses["loss"].backward()
    # Per-level cross-entropy starts near the uniform value, mean of log(levels).
    assert abs(losses["loss"].item() - float(np.mean(np.log([8, 5, 5, 5])))) < 1.0


def test_live_scorer_fills_in_missing_scores_and_can_override_stored_ones():
    scorer = registry.build("scorer.motion", stride=(2, 4, 4))
    model = _tiny_mae(scorer=scorer)
    video = torch.randn(2, 3, 32, 32, 32)
    live = scorer(video)
    assert torch.equal(model.token_scores({"video": video}), live)
    stored = torch.rand_like(live)
    assert torch.equal(model.token_scores({"video": video, "scores": stored}), stored)
    forced = _tiny_mae(scorer=scorer, score_source="scorer")
    assert torch.equal(forced.token_scores({"video": video, "scores": stored}), live)
    assert not any(p.requires_grad for p in scorer.parameters())
    with pytest.raises(ValueError, match="model.mae.scorer: its stride"):
        _tiny_mae(scorer=registry.build("scorer.motion", stride=(2, 8, 8)))
    with pytest.raises(ValueError, match="score_source"):
        _tiny_mae(score_source="flow")


def test_short_and_corrupt_clips_are_left_out_counted_and_reported(setup, tmp_path):
    """precompute never aborts on one bad clip: under short_policy='skip' a clip shorter than
    the view and a truncated mp4 are left out, counted, and the manifest counts what is left."""
    from lvmae.components.data.decoding.codec import encode_mp4
    from lvmae.components.data.formats.manifest import Manifest, Split, save_manifest
    from lvmae.components.data.formats.schema import make_sample
    from lvmae.components.data.reading.batch_streams import write_shards
    from tests.data.video_fixtures import moving_clip

    def generate():
        for i, frames in enumerate((40, 12, 32, 36)):
            data = encode_mp4(moving_clip(frames, 32, 48, seed=i), 25.0, gop=8)
            yield make_sample(f"c{i}", data[: len(data) // 3] if i == 3 else data, {"label": i % 2}, 25.0,
                              frames, (32, 48))
    write_shards(generate(), str(tmp_path / "src"), "train", 2)
    save_manifest(Manifest(name="mixed", splits={"train": Split("train-{000000..000001}.tar", 4)},
                           heads={"label": ["a", "b"]}, codec="mp4"), tmp_path / "src" / "manifest.yaml")
    source = registry.build("dataset.manifest", path=str(tmp_path / "src" / "manifest.yaml"))
    skipping = DataPipeline(clip_frames=CLIP_FRAMES, size=32, short_policy="skip", workers=0)
    result = precompute_job(pipeline=skipping, checkpoint=setup["checkpoint"], dataset=source,
                            out_dir=str(tmp_path / "out"), progress=False)
    assert result["skipped"] == {"corrupt": 1, "short": 1} and result["samples"] == {"train": 2}
    batch = next(iter(skipping.loader(result["manifest"], "train", mode="train", batch_size=2)))
    assert sorted(batch["key"]) == ["c0", "c2"] and batch["scores"].shape == (2, 16, 8, 8)
