"""A throwaway plugin package, installed the way pip leaves one (its code plus a ``.dist-info``
with an ``lvmae.plugins`` entry point) on a temporary ``sys.path``: the kit passes on its
components, ``run.py list`` names the package, and lvmae's own registry-parametrised tests
stay green with it installed and no gin file of it in our repository."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "lvmae_throwaway_plugin"

MASKING = '''
import torch
from lvmae.components.masking.base import DecoderMasking
from lvmae.components.masking.plan import count_from_ratio
from lvmae.registry import register


@register("masking.decoder.throwaway_checker")
class Checker(DecoderMasking):
    """Encoder-masked tokens on a checkerboard of (t + h + w) parity, up to ``budget``."""

    def __init__(self, budget: float = 0.15):
        count_from_ratio(budget, 1, "masking.decoder.throwaway_checker.budget")
        self.budget = float(budget)

    def count(self, grid, kept):
        return min(count_from_ratio(self.budget, grid.n, "budget"), grid.n - kept)

    def __call__(self, grid, enc_keep_idx, generator, scores=None):
        batch_size, kept = enc_keep_idx.shape
        t, h, w = torch.meshgrid(torch.arange(grid.t), torch.arange(grid.h), torch.arange(grid.w), indexing="ij")
        rank = ((t + h + w) % 2).flatten().float().expand(batch_size, -1).clone()   # even cells first
        rank = rank + torch.rand(batch_size, grid.n, generator=generator) * 0.5
        rank.scatter_(1, enc_keep_idx, float("inf"))
        return rank.argsort(dim=1)[:, :self.count(grid, kept)]
'''

SCORER = '''
import torch
from lvmae.components.scorers.base import Scorer, check_stride
from lvmae.registry import register


@register("scorer.throwaway_brightness")
class Brightness(Scorer):
    """Mean brightness of each token's pixels."""

    def __init__(self, stride=(2, 16, 16)):
        super().__init__()
        self.stride = check_stride(stride, "scorer.throwaway_brightness.stride")
        self._config = dict(stride=list(self.stride))

    def forward(self, video):
        self.check_video(video)
        return torch.nn.functional.avg_pool3d(video.float().mean(dim=1, keepdim=True), self.stride)[:, 0]
'''

PLUGIN_TEST = '''
from lvmae.components.kit import check_decoder_masking, check_scorer
from lvmae_throwaway_plugin.masking import Checker
from lvmae_throwaway_plugin.scorer import Brightness


def test_masking():
    check_decoder_masking(Checker(0.2))


def test_scorer():
    check_scorer(Brightness())
'''


def _install(site: Path) -> None:
    package = site / PACKAGE
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("from . import masking, scorer  # noqa: F401\n")
    (package / "masking.py").write_text(MASKING)
    (package / "scorer.py").write_text(SCORER)
    dist = site / f"{PACKAGE}-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: lvmae-throwaway-plugin\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(f"[lvmae.plugins]\nthrowaway = {PACKAGE}\n")
    (dist / "top_level.txt").write_text(f"{PACKAGE}\n")
    (dist / "RECORD").write_text("")


def _run(args: list[str], site: Path, cwd: Path) -> subprocess.CompletedProcess:
    path = os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "PYTHONPATH": path, "PYTHONWARNINGS": "ignore"}
    return subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=900, check=False)


@pytest.mark.slow
def test_installed_plugin_package_passes_the_kit_and_our_suite_stays_green(tmp_path):
    site = tmp_path / "site"
    _install(site)
    (tmp_path / "test_throwaway.py").write_text(PLUGIN_TEST)

    own = _run(["-m", "pytest", "-q", "-p", "no:cacheprovider", "test_throwaway.py"], site, tmp_path)
    assert own.returncode == 0 and "2 passed" in own.stdout, own.stdout[-3000:]

    listing = _run([str(ROOT / "run.py"), "list"], site, ROOT)
    assert listing.returncode == 0, listing.stderr[-2000:]
    line = next(l for l in listing.stdout.splitlines() if "masking.decoder.throwaway_checker" in l)
    assert "installed plugin package lvmae-throwaway-plugin (entry point 'throwaway')" in line

    # lvmae's own registry-parametrised tests, with the package installed: the kit runs on its
    # components; the gin-file smoke tests cover lvmae's components only.
    suite = _run(["-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "not slow", "-rA",
                  "tests/test_kit.py", "tests/test_core_smoke.py::test_masking_strategy_builds_from_its_gin_file_and_trains",
                  "tests/test_tracking_provenance.py::test_the_operative_config_of_a_plugin_run_reparses_in_a_fresh_process"],
                 site, ROOT)
    assert suite.returncode == 0, suite.stdout[-3000:]
    assert "PASSED tests/test_kit.py::test_every_registered_component_passes_the_kit[masking.decoder.throwaway_checker]" in suite.stdout
    assert "PASSED tests/test_kit.py::test_every_registered_component_passes_the_kit[scorer.throwaway_brightness]" in suite.stdout
    assert "throwaway" not in "".join(l for l in suite.stdout.splitlines() if "test_core_smoke" in l)


@pytest.mark.slow
def test_a_broken_installed_plugin_fails_the_kit_by_name(tmp_path):
    site = tmp_path / "site"
    _install(site)
    masking = site / PACKAGE / "masking.py"
    masking.write_text(masking.read_text().replace('rank.scatter_(1, enc_keep_idx, float("inf"))', "pass"))
    suite = _run(["-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_kit.py", "-k", "throwaway_checker"],
                 site, ROOT)
    assert suite.returncode == 1
    assert ("'masking.decoder.throwaway_checker' (lvmae_throwaway_plugin.masking.Checker): "
            in suite.stdout and "tokens the encoder kept" in suite.stdout), suite.stdout[-3000:]
