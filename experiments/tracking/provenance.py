"""What a run needs to be reproduced, beyond its config: stored in ``info.environment`` of every
recorded run (``record``), with files as artifacts.

- versions: Python, torch, CUDA/cuDNN (and the GPU names), lvmae;
- the repository once: its commit and whether the tree is dirty — then ``git diff HEAD`` is
  attached as ``git_diff.patch``;
- plugins: every module outside lvmae that registers a component (an entry-point plugin, a
  module a gin file imports), with its source file, its distribution and version; each source
  is attached as ``plugin_source.<module>.py``.

The operative config artifact starts with an ``import`` line per plugin module
(:func:`plugin_imports`), so it re-parses in a fresh process that has the plugins installed.
"""
from __future__ import annotations

import importlib.metadata
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

PACKAGE = "lvmae"
ROOT = Path(__file__).resolve().parents[2]     # the repository (or installed package) root
GIT_TIMEOUT_S = 10
DIFF_ARTIFACT = "git_diff.patch"
PLUGIN_SOURCE_PREFIX = "plugin_source."   # artifact names are flat (the file store makes no folders)


def _version(distribution: str) -> str | None:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def versions() -> dict:
    import torch
    cuda = torch.cuda.is_available()
    return {"python": platform.python_version(), "torch": str(torch.__version__), "lvmae": _version(PACKAGE),
            "cuda": torch.version.cuda, "cudnn": torch.backends.cudnn.version() if cuda else None,
            "gpus": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] if cuda else []}


def _git(*args: str) -> str | None:
    try:
        result = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=GIT_TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return result.stdout if result.returncode == 0 else None


def repository() -> dict | None:
    """{"path", "commit", "dirty"} of the checkout lvmae runs from; None outside git."""
    commit = _git("rev-parse", "HEAD")
    if commit is None:
        return None
    status = _git("status", "--porcelain", "--untracked-files=no") or ""
    return {"path": str(ROOT), "commit": commit.strip(), "dirty": bool(status.strip())}


def _distribution_of(module_file: str) -> tuple[str | None, str | None]:
    """(distribution, version) that installed ``module_file``, if any."""
    target = os.path.realpath(module_file)
    for distribution in importlib.metadata.distributions():
        for file in distribution.files or ():
            if file.suffix == ".py" and os.path.realpath(distribution.locate_file(file)) == target:
                return distribution.metadata["Name"], distribution.version
    return None, None


def plugins() -> list[dict]:
    """Modules outside lvmae that registered components: name, file, distribution, version."""
    from lvmae import registry
    modules = sorted({entry.module for kind in registry.all_kinds() for entry in registry.entries(kind)
                      if not entry.module.startswith(PACKAGE + ".")})
    found = []
    for name in modules:
        module = sys.modules.get(name)
        path = getattr(module, "__file__", None)
        distribution, version = _distribution_of(path) if path else (None, None)
        found.append({"module": name, "file": path, "distribution": distribution, "version": version})
    return found


def plugin_imports() -> str:
    """``import <module>`` lines (gin syntax) for every plugin module: the operative config
    then names where its plugin selectors come from."""
    lines = [f"# plugin {p['module']} from {p['distribution'] or p['file']} {p['version'] or ''}".rstrip()
             + f"\nimport {p['module']}" for p in plugins() if p["module"] != "__main__"]
    return "\n".join(lines) + ("\n\n" if lines else "")


def record(run) -> dict:
    """Writes ``info.environment`` and attaches the diff and plugin sources; returns the record."""
    environment = {"versions": versions(), "repository": repository(), "plugins": plugins()}
    run.info["environment"] = environment
    repo = environment["repository"]
    if repo and repo["dirty"]:
        diff = _git("diff", "HEAD")
        if diff:
            with tempfile.TemporaryDirectory() as folder:
                path = Path(folder) / DIFF_ARTIFACT
                path.write_text(diff, encoding="utf-8")
                run.add_artifact(str(path), DIFF_ARTIFACT)
    for plugin in environment["plugins"]:
        if plugin["file"] and os.path.isfile(plugin["file"]):
            run.add_artifact(plugin["file"], f"{PLUGIN_SOURCE_PREFIX}{plugin['module']}.py")
    return environment


def unique_repositories(repositories: list[dict]) -> list[dict]:
    """Sacred's per-source repository entries, each repository once."""
    seen, unique = set(), []
    for repo in repositories:
        key = (repo.get("url"), repo.get("commit"))
        if key not in seen:
            seen.add(key)
            unique.append(repo)
    return unique
