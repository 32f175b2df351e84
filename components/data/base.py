"""The dataset contract: a named set of WebDataset shards per split, plus label metadata."""
from __future__ import annotations

import abc

from lvmae.components.data.manifest import Manifest
from lvmae.registry import set_contract, subclass_of


class Dataset(abc.ABC):
    """Something that can (re)produce a manifest describing its shards."""

    @abc.abstractmethod
    def prepare(self) -> Manifest:
        """Makes sure the shards exist (writing them if the dataset is generated) and
        returns the manifest."""


set_contract("dataset", subclass_of(Dataset, prepare=()))
