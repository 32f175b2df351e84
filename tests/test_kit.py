"""The contract kit over EVERY registered component of the kinds it checks — lvmae's own and
any installed entry-point plugin — parametrised from the registry, so a new component is
checked the moment it registers, with no gin file of its own required here."""
from __future__ import annotations

import pytest

from lvmae import registry
from lvmae.components import kit

registry.discover()
# Small sizes for the kinds whose defaults are paper-sized; only parameters a component
# actually has are passed, so plugins with other parameters build with their defaults.
SMALL = {
    "backbone": {"clip_frames": 4, "image_size": 32, "tubelet": (2, 16, 16), "dim": 32, "depth": 1,
                 "heads": 2},
    "tokenizer": {"base_channels": 8, "channel_multipliers": (1, 1), "num_res_blocks": 1,
                  "stride": (2, 4, 4), "window_frames": 4},
    "dataset": {"clip_frames": 16, "train_samples": 4, "val_samples": 2, "samples_per_shard": 2},
}
# Presets whose width and depth are fixed (ViT-S/B/L): building one takes seconds.
SLOW = {"backbone.vit_s", "backbone.vit_b", "backbone.vit_l"}
# Need datasets that exist (a manifest; a mixture's sources): checked on ones made by a generated
# dataset below.
NEEDS_FILES = {"dataset.manifest", "dataset.mixture"}


def _names() -> list:
    params = []
    for kind in kit.CHECKS:
        for entry in registry.entries(kind):
            if entry.full_name in NEEDS_FILES:
                continue
            marks = [pytest.mark.slow] if entry.full_name in SLOW else []
            params.append(pytest.param(entry.full_name, marks=marks, id=entry.full_name))
    return params


def _small_kwargs(entry: registry.Entry, tmp_path) -> dict:
    parameters = entry.parameters()
    kwargs = {key: value for key, value in SMALL.get(entry.kind, {}).items() if key in parameters}
    if entry.kind == "dataset" and "root" in parameters:
        kwargs["root"] = str(tmp_path)
    return kwargs


@pytest.mark.parametrize("name", _names())
def test_every_registered_component_passes_the_kit(name, tmp_path):
    entry = registry.get(name)
    kit.check_component(name, **_small_kwargs(entry, tmp_path))


def test_the_kit_covers_every_kind_with_a_call_contract():
    assert set(kit.CHECKS) >= {"masking.encoder", "masking.decoder", "scorer", "target", "quantizer",
                               "tokenizer", "backbone", "dataset"}


def test_a_manifest_dataset_passes_the_kit(tmp_path):
    generated = registry.build("dataset.synthetic_motion", root=str(tmp_path), train_samples=2,
                               val_samples=2, samples_per_shard=2)
    kit.check_dataset(generated)
    [manifest] = tmp_path.glob("synthetic_motion-*/manifest.yaml")
    kit.check_dataset(registry.build("dataset.manifest", path=str(manifest)))
    kit.check_dataset(registry.build("dataset.mixture", sources=[generated, str(manifest)], weights=[0.5, 0.5]))
