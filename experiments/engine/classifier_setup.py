"""Building the fine-tuning classifier from a gin binding and the dataset manifest."""
from __future__ import annotations

from collections.abc import Callable

from torch import nn

from lvmae.components.data.formats.manifest import Manifest


def manifest_heads(manifest: Manifest) -> dict[str, int]:
    """{head name: number of classes}, in the manifest's order (the first is primary)."""
    if not manifest.heads:
        raise ValueError(f"dataset manifest {manifest.name!r} declares no label heads ('heads')")
    return {name: len(classes) for name, classes in manifest.heads.items()}


def build_classifier(model: nn.Module | Callable[..., nn.Module], manifest: Manifest) -> nn.Module:
    """``model`` is a factory (gin ``@model.classifier`` without parentheses) called with the
    manifest's heads, or a built classifier whose head names must be the manifest's."""
    heads = manifest_heads(manifest)
    if not isinstance(model, nn.Module):
        return model(num_classes=heads)
    built = list(getattr(model, "heads", {}))
    if built != list(heads):
        raise ValueError(f"the classifier's heads {built} differ from the dataset's {list(heads)}; "
                         f"bind the model as a factory (`@model.classifier` without parentheses) "
                         f"so that it takes the manifest's heads")
    return model
