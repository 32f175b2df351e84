"""Shared fixtures: components discovered and commands registered once (so a gin file naming
``pretrain_loop`` parses in any test file run alone); gin cleared around each test."""
from __future__ import annotations

import gin
import pytest

from lvmae import registry
from lvmae.experiments import commands  # noqa: F401  (registers every command's gin configurables)

registry.discover()


@pytest.fixture(autouse=True)
def _study_ledger_in_tmp(tmp_path_factory, monkeypatch):
    """Study reports record runs into a ledger in the repository; tests keep theirs apart."""
    monkeypatch.setenv("LVMAE_STUDY_RECORDS", str(tmp_path_factory.mktemp("study_records")))


@pytest.fixture(autouse=True)
def _clean_gin():
    gin.clear_config()
    yield
    gin.clear_config()
