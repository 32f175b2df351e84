"""The installable package: the wheel holds everything under the ``lvmae`` namespace (no
generic top-level names), ships the gin files and board_loopback.cjs, declares ranges rather
than exact pins; installed into a fresh virtual environment outside the repository, its
``lvmae`` console script lists the components and runs a 2-step pre-training from an empty
folder, finding the gin files inside the package.

The fresh environment gets lvmae from the wheel and nothing else of ours: its only link to the
dependencies is a ``.pth`` to a folder of links to this environment's installed packages,
lvmae itself (and its editable hook) left out, so the test takes seconds, needs no network and
still resolves the wheel's declared requirements (``pip install --no-index``).
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import venv
import zipfile
from pathlib import Path

import pytest
from packaging.requirements import Requirement

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]
TOP_LEVEL_FOLDERS = ("registry", "components", "experiments")
# What a build must not see (the copy is what a clean clone holds): environments, outputs and
# caches at the top (gin/data/ is a source folder), caches anywhere.
NOT_SOURCES_AT_TOP = {".venv", ".git", ".tools", "outputs", "runs", "data", "build"}
CACHES = shutil.ignore_patterns("*.egg-info", "__pycache__", ".pytest_cache", "node_modules")


def _not_sources(folder: str, names: list[str]) -> set[str]:
    top = set(names) & NOT_SOURCES_AT_TOP if Path(folder) == ROOT else set()
    return top | CACHES(folder, names)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    source = tmp_path_factory.mktemp("source") / "lvmae"
    shutil.copytree(ROOT, source, ignore=_not_sources)
    dist = tmp_path_factory.mktemp("dist")
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                            "-q", "-w", str(dist), str(source)], capture_output=True, text=True)
    assert built.returncode == 0, built.stderr[-3000:]
    (path,) = dist.glob("lvmae-*.whl")
    return path


def test_the_wheel_puts_everything_under_lvmae_with_gin_files_board_script_and_license(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    top = {name.split("/")[0] for name in names}
    assert top == {"lvmae", wheel.name.split("-py3")[0] + ".dist-info"}, top
    shipped_gin = {name.removeprefix("lvmae/") for name in names if name.endswith((".gin", ".yaml"))}
    repo_gin = {str(path.relative_to(ROOT)) for pattern in ("*.gin", "*.yaml")
                for path in (ROOT / "gin").rglob(pattern)}
    assert any(name.endswith(".yaml") for name in repo_gin)        # the study files
    assert repo_gin and shipped_gin == repo_gin
    assert "lvmae/experiments/tracking/board_loopback.cjs" in names
    for folder in TOP_LEVEL_FOLDERS:
        assert f"lvmae/{folder}/__init__.py" in names
    assert any(name.endswith(".dist-info/licenses/LICENSE") for name in names)


def test_the_wheel_declares_ranges_not_exact_pins(wheel):
    with zipfile.ZipFile(wheel) as archive:
        (metadata,) = [name for name in archive.namelist() if name.endswith(".dist-info/METADATA")]
        lines = archive.read(metadata).decode().splitlines()
    requires = [Requirement(line.split(":", 1)[1]) for line in lines if line.startswith("Requires-Dist:")]
    assert "torch" in {requirement.name for requirement in requires}
    pinned = [str(requirement) for requirement in requires
              if any(spec.operator in ("==", "===") for spec in requirement.specifier)]
    assert not pinned, f"exact pins belong in constraints.txt, not the package: {pinned}"
    assert "License-Expression: Apache-2.0" in lines


def _fresh_environment(folder: Path) -> Path:
    """A venv whose only third-party packages are links to this environment's, lvmae excluded."""
    venv.EnvBuilder(with_pip=False).create(folder / "venv")
    links = folder / "deps"
    links.mkdir()
    installed = Path(sysconfig.get_paths()["purelib"])
    for entry in installed.iterdir():
        name = entry.name.lower()
        if name.startswith(("lvmae", "__editable__", "_lvmae")) or name.endswith(".pth"):
            continue
        (links / entry.name).symlink_to(entry)
    base = str(folder / "venv")
    fresh = Path(sysconfig.get_path("purelib", vars={"base": base, "platbase": base}))
    (fresh / "dependencies.pth").write_text(f"{links}\n")
    return folder / "venv" / "bin"


def _run(command: list, cwd: Path, **env) -> subprocess.CompletedProcess:
    environment = {key: value for key, value in os.environ.items()
                   if key not in ("PYTHONPATH", "VIRTUAL_ENV", "LVMAE_MONGO_URL")}
    environment.update({"PYTHONWARNINGS": "ignore", **env})
    return subprocess.run([str(part) for part in command], cwd=cwd, env=environment,
                          capture_output=True, text=True, timeout=600)


def test_installed_console_script_lists_and_pretrains_from_an_empty_folder(wheel, tmp_path):
    bin_dir = _fresh_environment(tmp_path)
    installed = _run([sys.executable, "-m", "pip", "--python", bin_dir / "python", "install",
                      "--no-index", "-q", wheel], cwd=tmp_path)
    assert installed.returncode == 0, installed.stdout[-2000:] + installed.stderr[-3000:]
    work = tmp_path / "elsewhere"
    work.mkdir()
    where = _run([bin_dir / "python", "-c", "import lvmae.registry as r; print(r.__file__)"], cwd=work)
    assert where.returncode == 0 and where.stdout.startswith(str(tmp_path / "venv")), where

    listing = _run([bin_dir / "lvmae", "list"], cwd=work)
    assert listing.returncode == 0, listing.stderr[-3000:]
    assert "masking.decoder.adaptive" in listing.stdout and "backbone.vit_b" in listing.stdout

    pretrain = _run([bin_dir / "lvmae", "pretrain", "-g", "gin/experiments/tiny_cpu.gin",
                     "-b", "pretrain_loop.steps=2", "-b", "WORKDIR='work'"],
                    cwd=work, LVMAE_OBSERVER="file", LVMAE_RUNS_DIR=str(work / "runs"))
    assert pretrain.returncode == 0, pretrain.stdout[-2000:] + pretrain.stderr[-3000:]
    assert list((work / "work").rglob("*.pt")), "the 2-step pre-training wrote no checkpoint"
