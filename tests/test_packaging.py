"""The installable package: the wheel holds everything under the ``lvmae`` namespace (no
generic top-level names), ships the gin files and board_loopback.cjs, declares ranges rather
than exact pins, with an upper bound on every runtime dependency. The README's install-anywhere
commands run as written in a fresh virtual environment outside the repository: the install from
a clean copy of the repository, then a short pre-training from another folder, which finds the
gin files inside the package, prints no ``ERROR`` line and — with no database installed —
records into files, saying so in one line. The installed ``lvmae`` lists the components, its
help names ``lvmae``, and a mistyped gin file is refused (exit 2) naming the nearest shipped one.

The fresh environment gets lvmae from the repository copy and nothing else of ours: its only
link to the dependencies is a ``.pth`` to a folder of links to this environment's installed
packages, lvmae itself (and its editable hook) left out, so the test takes seconds, needs no
network and still resolves the package's declared requirements (pip runs with no index and no
build isolation, set in the environment so the README's command line stays as written).
"""
from __future__ import annotations

import json
import os
import re
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
def source(tmp_path_factory) -> Path:
    """A copy of the repository as a clean clone holds it."""
    copy = tmp_path_factory.mktemp("source") / "lvmae"
    shutil.copytree(ROOT, copy, ignore=_not_sources)
    return copy


@pytest.fixture(scope="module")
def wheel(tmp_path_factory, source) -> Path:
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
    runtime = [requirement for requirement in requires if requirement.marker is None]
    assert {"numpy", "tqdm", "gitpython", "setuptools"} <= {r.name.lower() for r in runtime}
    unbounded = [str(requirement) for requirement in runtime
                 if not any(spec.operator in ("<", "<=", "~=") for spec in requirement.specifier)]
    assert not unbounded, f"runtime dependencies without an upper bound: {unbounded}"
    assert "License-Expression: Apache-2.0" in lines


def _fresh_environment(folder: Path) -> Path:
    """A venv (with its own pip) whose only third-party packages are links to this
    environment's, lvmae excluded."""
    venv.EnvBuilder(with_pip=True).create(folder / "venv")
    links = folder / "deps"
    links.mkdir()
    installed = Path(sysconfig.get_paths()["purelib"])
    for entry in installed.iterdir():
        name = entry.name.lower()
        if name.startswith(("lvmae", "__editable__", "_lvmae", "pip")) or name.endswith(".pth"):
            continue
        (links / entry.name).symlink_to(entry)
    base = str(folder / "venv")
    fresh = Path(sysconfig.get_path("purelib", vars={"base": base, "platbase": base}))
    (fresh / "dependencies.pth").write_text(f"{links}\n")
    # Python < 3.12's ensurepip also installs an old setuptools (65), which cannot build lvmae
    # and would shadow the linked one; pip's build isolation would replace it, this test's
    # offline build uses the environment's.
    for old in fresh.glob("setuptools*"):
        shutil.rmtree(old)
    return folder / "venv" / "bin"


# Settings a newcomer's environment does not have: the test's own, or the developer's.
_NOT_A_NEWCOMERS = ("PYTHONPATH", "VIRTUAL_ENV", "LVMAE_MONGO_URL", "LVMAE_OBSERVER", "LVMAE_RUNS_DIR",
                    "LVMAE_PROGRAM", "LVMAE_DB_FALLBACK", "PYTEST_CURRENT_TEST")


def _run(command: list | str, cwd: Path, bin_dir: Path | None = None, **env) -> subprocess.CompletedProcess:
    environment = {key: value for key, value in os.environ.items() if key not in _NOT_A_NEWCOMERS}
    if bin_dir is not None:     # the fresh environment activated: its lvmae and pip come first
        environment["PATH"] = f"{bin_dir}:/usr/local/bin:/usr/bin:/bin"
    environment.update(env)
    shell = isinstance(command, str)
    return subprocess.run(command if shell else [str(part) for part in command], cwd=cwd, env=environment,
                          shell=shell, executable="/bin/bash" if shell else None,
                          capture_output=True, text=True, timeout=600)


def readme_install_anywhere() -> list[str]:
    """The README's two install-anywhere lines, as written."""
    blocks = re.findall(r"```bash\n(.*?)```", (ROOT / "README.md").read_text(), flags=re.DOTALL)
    (block,) = [block for block in blocks if "cd /anywhere" in block]
    lines = [line for line in block.splitlines() if line.strip()]
    assert len(lines) == 2 and lines[0].startswith("pip install ") and lines[1].startswith("cd /anywhere && lvmae ")
    return lines


def _error_lines(result: subprocess.CompletedProcess) -> list[str]:
    return [line for line in (result.stdout + result.stderr).splitlines() if re.search(r"\bERROR\b", line)]


@pytest.fixture(scope="module")
def installed(tmp_path_factory, source) -> Path:
    """A fresh venv into which the README's ``pip install`` line, run in the repository copy,
    installed lvmae; returns its bin folder."""
    folder = tmp_path_factory.mktemp("fresh")
    bin_dir = _fresh_environment(folder)
    install = readme_install_anywhere()[0]
    # pip's inverted variable: PIP_NO_BUILD_ISOLATION=0 turns build isolation off (no download
    # of setuptools); with no index every requirement must already be met by the linked packages.
    done = _run(install, source, bin_dir, PIP_NO_INDEX="1", PIP_NO_BUILD_ISOLATION="0",
                PIP_DISABLE_PIP_VERSION_CHECK="1")
    assert done.returncode == 0, f"{install}\n{done.stdout[-2000:]}{done.stderr[-3000:]}"
    return bin_dir


def test_the_readme_install_anywhere_commands_work_as_written(installed, tmp_path):
    anywhere = tmp_path / "anywhere"
    anywhere.mkdir()
    where = _run(["python", "-c", "import lvmae.registry as r; print(r.__file__)"], anywhere, installed)
    assert where.returncode == 0 and where.stdout.startswith(str(installed.parent)), where

    command = readme_install_anywhere()[1].replace("/anywhere", str(anywhere))
    run = _run(command, tmp_path, installed)
    assert run.returncode == 0, f"{command}\n{run.stdout[-2000:]}{run.stderr[-3000:]}"
    assert not _error_lines(run), _error_lines(run)
    said = [line for line in run.stderr.splitlines() if "no database" in line]
    assert len(said) == 1 and "pip install 'lvmae[localdb]'" in said[0], run.stderr[-3000:]
    (record,) = [json.loads(path.read_text()) for path in (anywhere / "runs").glob("*/run.json")]
    assert record["status"] == "COMPLETED" and record["command"] == "pretrain"
    assert not (anywhere / "runs" / "db").exists()
    assert list((anywhere / "outputs").rglob("*.pt")), "the pre-training wrote no checkpoint"


def test_installed_lvmae_lists_helps_and_refuses_by_its_own_name(installed, tmp_path):
    listing = _run(["lvmae", "list"], tmp_path, installed)
    assert listing.returncode == 0, listing.stderr[-3000:]
    assert "masking.decoder.adaptive" in listing.stdout and "backbone.vit_b" in listing.stdout
    assert not _error_lines(listing) and "INFO" not in listing.stderr, listing.stderr[-2000:]

    helped = _run(["lvmae", "--help"], tmp_path, installed)
    assert helped.returncode == 0 and helped.stdout.startswith("usage: lvmae COMMAND"), helped.stdout[:300]
    assert "run.py" not in helped.stdout

    refused = _run(["lvmae", "pretrain", "-g", "gin/experiments/tiny_cpuu.gin"], tmp_path, installed)
    assert refused.returncode == 2, refused.stderr[-2000:]
    assert refused.stderr.startswith("lvmae pretrain: gin file not found: 'gin/experiments/tiny_cpuu.gin'")
    assert "did you mean 'gin/experiments/tiny_cpu.gin'?" in refused.stderr
    assert not list(tmp_path.iterdir()), "a refused command left files behind"

    # A study started from the installed package runs its stages through the package (there is
    # no run.py beside an installed lvmae).
    study = _run(["lvmae", "study", "run", "gin/studies/battery_long.yaml", "--seed", "1", "--dry-run"],
                 tmp_path, installed)
    assert study.returncode == 0, study.stderr[-3000:]
    stages = [line for line in study.stdout.splitlines() if line.startswith("$ ")]
    assert stages and all(" -m lvmae.experiments.commands.cli " in line for line in stages), study.stdout[-2000:]
