"""Label-preserving augmentations: which of the data pipeline's training augmentations keep a
dataset's labels.

The pipeline can do (``AUGMENTATIONS``): ``flip`` — the horizontal flip (``data_pipeline.flip``)
— and ``crop`` — the random resized crop (``data_pipeline.scale`` / ``ratio``: a random part of
the frame, zoomed, its aspect changed). Every dataset declares the ones that keep its labels
(``Dataset.label_preserving_augmentations``; a manifest lists the others under
``unsafe_augmentations``), and the pipeline refuses to run a dataset with one it does not keep
(preflight, before a run is recorded; ``DataPipeline.loader`` in training).

An augmentation is *unsafe* when the augmented clip can show a different answer than its
label — a mirrored "pushing something from left to right" is "from right to left" — not when
it merely hides the evidence (a crop that cuts the object away leaves the label right but
unseen, a risk of every random crop). The pipeline reverses no clip in time, so a task whose
labels depend on the arrow of time is safe with it.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping

# name → what it does to a clip (the words of every message)
AUGMENTATIONS: dict[str, str] = {
    "flip": "the horizontal flip (left ↔ right)",
    "crop": "the random resized crop (a random part of the frame, zoomed, aspect changed)",
}


class UnsafeAugmentationError(ValueError):
    """A configured augmentation changes the labels of the dataset it would be applied to."""


def check_names(names: Iterable[str], where: str) -> tuple[str, ...]:
    """``names`` as a tuple when each is one of ``AUGMENTATIONS``; else a ValueError naming
    ``where`` (the attribute, file or key that lists them) and the allowed names."""
    if isinstance(names, str):
        raise TypeError(f"{where}: expected a list of augmentation names, got the string {names!r}")
    names = tuple(names)
    unknown = [n for n in names if n not in AUGMENTATIONS]
    if unknown:
        raise ValueError(f"{where}: unknown augmentation(s) {unknown}; the data pipeline's augmentations "
                         f"are {list(AUGMENTATIONS)}")
    return names


def check_reasons(reasons: Mapping[str, str], where: str) -> dict[str, str]:
    """``reasons`` (augmentation → why it changes the labels) checked like :func:`check_names`;
    every reason must be a non-empty string."""
    check_names(list(reasons), where)
    empty = [name for name, why in reasons.items() if not isinstance(why, str) or not why.strip()]
    if empty:
        raise ValueError(f"{where}: give each unsafe augmentation a reason (why it changes the labels); "
                         f"none for {empty}")
    return dict(reasons)


def default_reason(name: str) -> str:
    return f"its labels change under {AUGMENTATIONS[name]}"
