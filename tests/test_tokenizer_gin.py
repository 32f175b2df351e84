"""The tokenizer gin files build what they say (paper size and CPU size)."""
from __future__ import annotations

import gin
import pytest
import torch

from lvmae import registry
from lvmae.experiments.engine import gin_config

registry.discover()      # (tests/conftest.py clears gin around every test)


def test_paper_tokenizer_gin_builds_the_vit_b_grid_with_an_18_bit_fsq():
    gin_config.parse(["gin/tokenizers/fsq_magvit_b.gin"], [])
    model = registry.build("model.adaptive_tokenizer")
    assert model.tokenizer.grid(16, 224, 224) == (8, 14, 14)
    assert model.tokenizer.quantizer.codebook_size == 2 ** 18
    assert tuple(model.scorer.stride) == (2, 16, 16)
    assert model.selected_count((8, 14, 14)) == 686          # half of 7·14·14


@pytest.mark.parametrize("topk_file", ["gin/topk/straight_through.gin", "gin/topk/perturbed.gin"])
def test_cpu_tokenizer_gin_runs_a_forward_with_each_topk(topk_file):
    gin_config.parse(["gin/experiments/tokenizer_flicker_cpu.gin", topk_file],
                     ["model.adaptive_tokenizer.topk = %TOPK"])
    model = registry.build("model.adaptive_tokenizer")
    clips = registry.build("clips.flicker_square")
    output = model(clips.batch(2, torch.Generator().manual_seed(0))["video"])
    assert output.recon.shape == (2, 1, 16, 32, 32)
    assert output.selection[:, 1:].sum().item() == 2 * model.selected_count((8, 8, 8))


@pytest.mark.parametrize("name", ["learned", "motion", "feature_distance", "random"])
def test_scorer_gin_files_build_on_the_tokenizer_stride(name):
    gin_config.parse([f"gin/scorers/{name}.gin"], ["TOKENIZER_STRIDE = (2, 4, 4)"])
    scorer = gin.query_parameter("%SCORER").scoped_configurable_fn()
    assert tuple(scorer.stride) == (2, 4, 4)
