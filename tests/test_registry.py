"""Registry behaviour: registration, gin exposure, duplicates, unknown names, contracts."""
from __future__ import annotations

import gin
import pytest
import torch

from lvmae import registry
from lvmae.components.masking.base import EncoderMasking
from lvmae.components.masking.plan import TokenGrid


def test_register_exposes_component_to_gin_under_the_same_name():
    with registry.temporary():
        @registry.register("masking.encoder.every_other")
        class EveryOther(EncoderMasking):
            def __init__(self, offset: int = 0):
                self.offset = offset

            def count(self, grid):
                return len(range(self.offset, grid.n, 2))

            def __call__(self, grid, batch_size, generator):
                return torch.arange(self.offset, grid.n, 2).expand(batch_size, -1)

        gin.parse_config("masking.encoder.every_other.offset = 1")
        built = registry.build("masking.encoder.every_other")
        assert built.offset == 1
        assert registry.get("masking.encoder.every_other").kind == "masking.encoder"
        assert "every_other" in registry.names("masking.encoder")
    assert "every_other" not in registry.names("masking.encoder")


def test_duplicate_name_raises_and_names_the_first_module():
    with pytest.raises(registry.RegistryError, match="duplicate component 'masking.encoder.tube'.*encoder_tube"):
        @registry.register("masking.encoder.tube")
        class Tube2(EncoderMasking):
            def __call__(self, grid, batch_size, generator):
                raise NotImplementedError


def test_unknown_name_lists_closest_matches_and_the_kind():
    with pytest.raises(registry.RegistryError) as error:
        registry.get("masking.encoder.tbe")
    message = str(error.value)
    assert "Did you mean: masking.encoder.tube" in message
    assert "Registered masking.encoder components: " in message and "tube" in message


def test_registration_under_an_unknown_kind_is_refused():
    with pytest.raises(registry.RegistryError, match="must start with a kind"):
        registry.register("no_such_kind.thing")


def test_kind_contract_is_checked_at_registration():
    with registry.temporary(), pytest.raises(registry.RegistryError, match="must subclass .*EncoderMasking"):
        @registry.register("masking.encoder.not_a_strategy")
        class NotAStrategy:
            pass


def test_every_registered_component_lists_its_parameters():
    entries = registry.entries()
    assert {e.kind for e in entries} >= {"backbone", "masking.encoder", "masking.decoder", "target", "dataset"}
    tube = registry.get("masking.encoder.tube")
    assert tube.parameters() == {"keep_ratio": "0.1"}


def test_tube_plugin_from_registry_builds_a_valid_plan():
    tube = registry.build("masking.encoder.tube", keep_ratio=0.25)
    grid = TokenGrid(4, 4, 4)
    keep = tube(grid, 3, torch.Generator().manual_seed(0))
    assert keep.shape == (3, 4 * 4)
