"""Shared fixtures: components discovered once; gin cleared around each test."""
from __future__ import annotations

import gin
import pytest

from lvmae import registry


registry.discover()


@pytest.fixture(autouse=True)
def _clean_gin():
    gin.clear_config()
    yield
    gin.clear_config()
