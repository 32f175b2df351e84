"""Classifier invariants: token drop counts, heads, drop-path, layer decay, mixup, views."""
from __future__ import annotations

import pytest
import torch

from lvmae import registry
from lvmae.components.backbones.heads import ClassAttentionPool, MeanPoolLinear
from lvmae.components.backbones.vit import VideoViT
from lvmae.components.models.classifier import VideoClassifier
from lvmae.experiments.engine.layer_decay import param_groups
from lvmae.experiments.engine.mixup import video_mixup
from lvmae.experiments.engine.views import batch_labels, random_window

registry.discover()
WIDTH = 24


def classifier(frames=16, token_drop=0.0, drop_path=0.0, head=MeanPoolLinear, heads=None):
    # 16 frames, 40×40 pixels, tubelet 2×8×8 → grid 8×5×5 = 200 tokens, 25 cells per frame.
    encoder = VideoViT(frames, 40, (2, 8, 8), dim=WIDTH, depth=3, heads=2)
    return VideoClassifier(encoder, head, heads or {"verb": 5, "noun": 7},
                           token_drop=token_drop, drop_path=drop_path)


def tokens_reaching_encoder(model, video, generator=None) -> int:
    seen = []
    handle = model.encoder.blocks[0].register_forward_pre_hook(lambda m, args: seen.append(args[0].shape[1]))
    model(video, generator)
    handle.remove()
    return seen[0]


def test_token_drop_sends_exactly_the_configured_fraction_in_training_only():
    model = classifier(token_drop=0.2)
    video = torch.randn(2, 3, 16, 40, 40)
    generator = torch.Generator().manual_seed(0)
    n = model.encoder.grid.n
    assert tokens_reaching_encoder(model.train(), video, generator) == int(0.8 * n) == 160
    assert tokens_reaching_encoder(model.eval(), video) == n
    idx_a = model.train().keep_indices(2, torch.Generator().manual_seed(3))
    idx_b = model.keep_indices(2, torch.Generator().manual_seed(3))
    assert torch.equal(idx_a, idx_b)                           # same seed, same tubes
    cells = model.encoder.grid.cells
    assert all(len(set((row % cells).tolist())) == 20 for row in idx_a)   # whole tubes
    assert tokens_reaching_encoder(classifier(token_drop=0.0).train(), video) == n


def test_token_drop_is_validated_and_needs_a_generator():
    with pytest.raises(ValueError, match="token_drop"):
        classifier(token_drop=1.0)
    with pytest.raises(ValueError, match="Generator"):
        classifier(token_drop=0.5).train()(torch.randn(1, 3, 16, 40, 40))


@pytest.mark.parametrize("head", [MeanPoolLinear, ClassAttentionPool])
def test_heads_give_logits_per_label_head_and_ignore_token_order(head):
    model = classifier(head=head).eval()
    logits = model(torch.randn(3, 3, 16, 40, 40))
    assert {k: tuple(v.shape) for k, v in logits.items()} == {"verb": (3, 5), "noun": (3, 7)}
    pool = head(dim=WIDTH, num_classes=4).eval()
    tokens = torch.randn(2, 50, WIDTH)
    shuffled = tokens[:, torch.randperm(50)]
    assert torch.allclose(pool(tokens), pool(shuffled), atol=1e-5)


def test_class_attention_heads_must_divide_width():
    with pytest.raises(ValueError, match="head.class_attention.heads"):
        ClassAttentionPool(dim=WIDTH, num_classes=3, heads=5)


def test_drop_path_is_inactive_at_evaluation_and_random_in_training():
    torch.manual_seed(0)
    plain = classifier()
    dropped = classifier(drop_path=0.5)
    dropped.load_state_dict(plain.state_dict())              # same keys: hooks add none
    video = torch.randn(4, 3, 16, 40, 40)
    assert torch.allclose(plain.eval()(video)["verb"], dropped.eval()(video)["verb"], atol=1e-6)
    assert not torch.allclose(plain.train()(video)["verb"], dropped.train()(video)["verb"])


def test_layer_decay_scales_lr_from_heads_down_to_the_embedding():
    model = classifier()
    groups = param_groups(model, lr=1.0, weight_decay=0.05, layer_decay=0.5)
    scale = {name: g["lr"] for g in groups for name in g["names"]}
    depth = len(model.encoder.blocks)
    assert scale["heads.verb.fc.weight"] == 1.0 and scale["encoder.norm.weight"] == 1.0
    assert scale["encoder.blocks.2.attn.qkv.weight"] == 0.5
    assert scale["encoder.blocks.0.attn.qkv.weight"] == 0.5 ** depth
    assert scale["encoder.patch_embed.weight"] == 0.5 ** (depth + 1)
    decay = {name: g["weight_decay"] for g in groups for name in g["names"]}
    assert decay["encoder.blocks.0.norm1.weight"] == 0.0 and decay["heads.verb.fc.weight"] == 0.05
    assert sum(len(g["names"]) for g in groups) == len(list(model.parameters()))


def test_mixup_soft_targets_are_distributions_and_cutmix_pastes_a_tube():
    video = torch.randn(4, 3, 8, 16, 16)
    labels = {"verb": torch.tensor([0, 1, 2, 3])}
    generator = torch.Generator().manual_seed(0)
    cutmix = video_mixup(mixup_alpha=0.0, cutmix_alpha=1.0, label_smoothing=0.1)
    mixed, soft, lam = cutmix(video, labels, {"verb": 4}, generator)
    assert torch.allclose(soft["verb"].sum(1), torch.ones(4))
    changed = (mixed != video).any(dim=1)                                 # (b, T, H, W)
    assert torch.equal(changed, changed[:, :1].expand_as(changed))         # same box every frame
    pasted = changed[0, 0].float().mean()
    assert pasted == pytest.approx(1 - lam, abs=1e-6)
    off = video_mixup(prob=0.0, label_smoothing=0.0)
    same, hard, lam = off(video, labels, {"verb": 4}, generator)
    assert lam == 1.0 and torch.equal(same, video)
    assert torch.equal(hard["verb"].argmax(1), labels["verb"])
    with pytest.raises(ValueError, match="video_mixup.prob"):
        video_mixup(prob=2.0)


def test_batch_labels_follow_the_contract():
    single = {"label": torch.tensor([1])}
    assert batch_labels(single, ["direction"])["direction"].tolist() == [1]
    multi = {"label": torch.tensor([1]), "labels": {"verb": torch.tensor([1]), "noun": torch.tensor([2])}}
    assert set(batch_labels(multi, ["verb", "noun"])) == {"verb", "noun"}
    with pytest.raises(KeyError, match="noun"):
        batch_labels({"label": 0, "labels": {"verb": 0}}, ["verb", "noun"])


def test_random_window_draws_inside_the_clip_and_keeps_fitting_clips():
    video = torch.arange(32.0).reshape(1, 1, 32, 1, 1).expand(2, 1, 32, 12, 12).contiguous()
    generator = torch.Generator().manual_seed(0)
    starts = set()
    for _ in range(40):
        window = random_window(video, 8, 10, generator)
        assert window.shape == (2, 1, 8, 10, 10)
        first = int(window[0, 0, 0, 0, 0])
        assert torch.equal(window[0, 0, :, 0, 0], torch.arange(first, first + 8.0))   # contiguous
        starts.add(first)
    assert min(starts) >= 0 and max(starts) <= 24 and len(starts) > 5
    assert random_window(video, 32, 12, generator) is video


def test_class_counts_are_validated_with_the_parameter_name():
    with pytest.raises(ValueError, match="model.classifier.num_classes is not set"):
        VideoClassifier(VideoViT(16, 40, (2, 8, 8), dim=WIDTH, depth=1, heads=2), MeanPoolLinear)
    with pytest.raises(ValueError, match="≥ 1 class per head"):
        classifier(heads={"verb": 0})
