"""The probe's features come from the centred window when clips are longer than the encoder."""
from __future__ import annotations

import torch

from lvmae.components.backbones.vit import VideoViT
from lvmae.experiments.commands import probe


def test_features_of_long_clips_come_from_the_centred_window(monkeypatch):
    encoder = VideoViT(clip_frames=8, image_size=8, tubelet=(4, 8, 8), dim=16, depth=1, heads=2)
    video = torch.randn(2, 3, 32, 8, 8)
    batch = {"video": video, "label": torch.tensor([0, 1]), "labels": {"label": torch.tensor([0, 1])},
             "key": ["a", "b"]}
    monkeypatch.setattr(probe, "stream_batches", lambda urls, batch_size: iter([batch]))
    features, _labels, keys = probe.extract_features(encoder, "unused", 2, ["label"], True, "test",
                                                    torch.device("cpu"), "fp32")
    assert features.shape == (2, encoder.grid.n, 16) and keys == ["a", "b"]
    with torch.no_grad():
        expected = encoder(video[:, :, 12:20]).half()
        other = encoder(video[:, :, :8]).half()
    assert torch.equal(features, expected) and not torch.equal(features, other)
