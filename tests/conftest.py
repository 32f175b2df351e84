"""Shared fixtures: components discovered and commands registered once (so a gin file naming
``pretrain_loop`` parses in any test file run alone); gin cleared around each test."""
from __future__ import annotations

import gin
import pytest

from lvmae import registry
from lvmae.experiments import commands  # noqa: F401  (registers every command's gin configurables)

registry.discover()


@pytest.fixture(autouse=True)
def _clean_gin():
    gin.clear_config()
    yield
    gin.clear_config()
