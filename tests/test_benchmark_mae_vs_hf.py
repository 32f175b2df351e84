"""``benchmarks/mae_vs_hf.py`` runs every case at a toy size and reports what the GPU check reads."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.cli import ROOT


def _bench(tmp_path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "benchmarks/mae_vs_hf.py"), "--size", "toy",
                           "--frames", "4", "--image-size", "32", "--batch", "2", "--steps", "1", *args],
                          cwd=tmp_path, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"})


@pytest.mark.slow
def test_benchmark_reports_every_case_against_hf(tmp_path):
    done = _bench(tmp_path, "--device", "cpu", "--json", str(tmp_path / "out.json"), "--peak-tflops", "1")
    assert done.returncode == 0, done.stderr[-3000:]
    results = {r["case"]: r for r in json.loads((tmp_path / "out.json").read_text())["results"]}
    assert list(results) == ["hf", "ours-all", "ours", "lvmae"]
    for result in results.values():
        assert result["clips_per_s"] > 0 and result["peak_gib"] > 0 and 0 < result["mfu"] < 1
    # like for like decodes as many tokens as transformers; the budgets decode fewer
    assert results["ours-all"]["decoder_tokens"] == results["hf"]["decoder_tokens"]
    assert results["lvmae"]["decoder_tokens"] < results["hf"]["decoder_tokens"]
    for case in ("ours-all", "ours", "lvmae"):    # the planner's prediction beside the measurement
        assert abs(results[case]["predicted_gib"] / results[case]["peak_gib"] - 1) <= 0.15, results[case]
    assert results["hf"]["predicted_gib"] is None
    assert "| lvmae |" in done.stdout and "clips/s ÷ HF" in done.stdout

    bad = _bench(tmp_path, "--device", "cpu", "--cases", "hf,fast")
    assert bad.returncode == 2 and "--cases" in bad.stderr and "fast" in bad.stderr
