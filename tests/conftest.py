"""Shared fixtures: components discovered and commands registered once (so a gin file naming
``pretrain_loop`` parses in any test file run alone); gin cleared around each test."""
from __future__ import annotations

import os

# Under pytest-xdist (scripts/test.sh starts one worker per core) each worker, and every run.py
# it starts (they inherit the variable), gets its share of the cores as threads rather than all
# of them: workers × threads never oversubscribes the machine. Set before torch is imported.
_WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
if _WORKERS > 1:
    _CORES = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, _CORES // _WORKERS)))

import gin
import pytest
import torch

from lvmae import registry
from lvmae.experiments import commands  # noqa: F401  (registers every command's gin configurables)

registry.discover()
if _WORKERS > 1:
    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))


@pytest.fixture(autouse=True)
def _study_ledger_in_tmp(tmp_path_factory, monkeypatch):
    """Study reports record runs into a ledger in the repository; tests keep theirs apart."""
    monkeypatch.setenv("LVMAE_STUDY_RECORDS", str(tmp_path_factory.mktemp("study_records")))


@pytest.fixture(autouse=True)
def _clean_gin():
    gin.clear_config()
    yield
    gin.clear_config()
