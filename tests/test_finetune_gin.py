"""The fine-tuning gin files parse and build a classifier with the settings they name."""
from __future__ import annotations

import gin
import pytest

from lvmae import registry
from lvmae.experiments.engine import gin_config
from lvmae.experiments.engine.mixup import video_mixup

registry.discover()
TINY = "gin/experiments/tiny_cpu.gin"


@pytest.mark.parametrize("files, token_drop, head", [
    (["gin/finetune/recipe_128f.gin"], 0.2, "MeanPoolLinear"),
    (["gin/finetune/recipe_32f.gin", "gin/finetune/class_attention.gin"], 0.0, "ClassAttentionPool"),
])
def test_recipes_build_the_classifier_they_describe(files, token_drop, head):
    gin_config.parse([TINY, *files], [])
    classifier = registry.build("model.classifier", num_classes={"verb": 3, "noun": 5})
    assert classifier.token_drop == token_drop
    assert {type(h).__name__ for h in classifier.heads.values()} == {head}
    assert gin.query_parameter("finetune_loop.layer_decay") == 0.75
    assert isinstance(gin.query_parameter("finetune_loop.mixup").scoped_configurable_fn(), video_mixup)
