"""The dataset contract: a named set of WebDataset shards per split, plus label metadata and the
augmentations that keep its labels (components/data/formats/label_safety.py)."""
from __future__ import annotations

import abc
from collections.abc import Mapping
from typing import ClassVar

from lvmae.components.data.formats.label_safety import (
    AUGMENTATIONS,
    check_names,
    check_reasons,
    default_reason,
)
from lvmae.components.data.formats.manifest import Manifest
from lvmae.registry import entry_of, set_contract, subclass_of


class Dataset(abc.ABC):
    """Something that can (re)produce a manifest describing its shards.

    A subclass declares which of the data pipeline's augmentations keep its labels
    (``label_preserving_augmentations``, inherited unless it sets its own) and, for each one it
    leaves out, may say why in ``label_changes`` (the pipeline's refusal quotes it). The base
    class keeps every augmentation: the usual case of natural video classified by what happens,
    not where (a task about left and right, or one a crop can turn into another class, says so).
    """

    #: Names from ``label_safety.AUGMENTATIONS`` that keep this dataset's labels.
    label_preserving_augmentations: ClassVar[tuple[str, ...]] = tuple(AUGMENTATIONS)
    #: Augmentation → why it changes this dataset's labels (for the ones left out above).
    label_changes: ClassVar[Mapping[str, str]] = {}

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        where = f"{cls.__module__}.{cls.__qualname__}"
        keeps = check_names(cls.label_preserving_augmentations, f"{where}.label_preserving_augmentations")
        reasons = check_reasons(cls.label_changes, f"{where}.label_changes")
        # A subclass that keeps what its parent did not need not clear the parent's reasons.
        contradicted = sorted(set(keeps) & set(reasons)) if "label_changes" in cls.__dict__ else []
        if contradicted:
            raise ValueError(f"{where}: {contradicted} are both in label_preserving_augmentations and in "
                             f"label_changes; an augmentation keeps the labels or changes them")

    @abc.abstractmethod
    def prepare(self) -> Manifest:
        """Makes sure the shards exist (writing them if the dataset is generated) and
        returns the manifest."""

    def unsafe_augmentations(self) -> dict[str, str]:
        """Every augmentation of the pipeline that this dataset does not declare label-preserving
        → why it changes the labels. Cheap: generates and writes nothing."""
        return {name: self.label_changes.get(name, default_reason(name))
                for name in AUGMENTATIONS if name not in self.label_preserving_augmentations}

    @property
    def display_name(self) -> str:
        """How messages name the dataset: its registered name (``dataset.synthetic_motion``)."""
        entry = entry_of(self)
        return entry.full_name if entry is not None else type(self).__qualname__


set_contract("dataset", subclass_of(Dataset, prepare=()))
