"""A recorded run holds what reproducing it needs: versions, the repository once (its diff when
dirty), each plugin module's source and package version; the operative config of a run that
used an entry-point plugin re-parses in a fresh process."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import gin

from lvmae import registry
from lvmae.experiments.engine import gin_config
from lvmae.experiments.tracking import provenance
from tests.tracking_support import ROOT, lvmae_env, run_lvmae

PLUGIN = textwrap.dedent('''
    from lvmae.registry import register

    @register("dataset.provenance_probe")
    def provenance_probe(size: int = 1):
        """A toy dataset factory: enough to be a registered plugin component."""
        return {"size": size}
''')


def _install_plugin(folder) -> None:
    """The module and a dist-info declaring it in lvmae's entry-point group (as pip would)."""
    (folder / "lvmae_provenance_plugin.py").write_text(PLUGIN)
    dist = folder / "lvmae_provenance_plugin-0.3.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: lvmae-provenance-plugin\nVersion: 0.3\n")
    (dist / "RECORD").write_text("lvmae_provenance_plugin.py,,\n")
    (dist / "entry_points.txt").write_text(
        f"[{registry.ENTRY_POINT_GROUP}]\nprobe = lvmae_provenance_plugin\n")


def test_each_repository_is_listed_once():
    repos = [{"url": "git://r", "commit": "a", "dirty": True}] * 3 + [{"url": "git://s", "commit": "b"}]
    assert provenance.unique_repositories(repos) == [repos[0], repos[3]]


def test_a_run_records_versions_repository_and_plugin_sources(tmp_path):
    _install_plugin(tmp_path)
    runs = tmp_path / "runs"
    result = run_lvmae(["tracking_check", "-b", "tracking_check_loop.steps=2"], runs, LVMAE_OBSERVER="file",
                       PYTHONPATH=str(tmp_path))
    assert result.returncode == 0, result.stderr[-3000:]
    environment = json.loads((runs / "1" / "info.json").read_text())["environment"]
    import torch
    assert environment["versions"]["torch"] == str(torch.__version__)
    assert environment["versions"]["lvmae"] and environment["versions"]["python"]
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    repo = environment["repository"]
    assert repo["commit"] == head
    artifacts = json.loads((runs / "1" / "run.json").read_text())["artifacts"]
    assert (provenance.DIFF_ARTIFACT in artifacts) == repo["dirty"]
    plugin = {p["module"]: p for p in environment["plugins"]}["lvmae_provenance_plugin"]
    assert plugin["distribution"] == "lvmae-provenance-plugin" and plugin["version"] == "0.3"
    assert plugin["file"] == str(tmp_path / "lvmae_provenance_plugin.py")
    stored = runs / "1" / f"{provenance.PLUGIN_SOURCE_PREFIX}lvmae_provenance_plugin.py"
    assert stored.read_text() == PLUGIN
    experiment = json.loads((runs / "1" / "run.json").read_text())["experiment"]
    assert len(experiment["repositories"]) == len({(r["url"], r["commit"]) for r in experiment["repositories"]})


def test_the_operative_config_of_a_plugin_run_reparses_in_a_fresh_process(tmp_path, monkeypatch):
    _install_plugin(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    with registry.temporary():
        import lvmae_provenance_plugin  # noqa: F401  (what entry-point discovery does)
        gin_config.parse([], ["dataset.provenance_probe.size = 7"])
        assert gin.get_configurable("dataset.provenance_probe")() == {"size": 7}
        text = provenance.plugin_imports() + gin_config.operative_config()
    del sys.modules["lvmae_provenance_plugin"]
    gin.clear_config()
    # (other installed plugins, if any, have their own lines: any order)
    assert text.startswith("# plugin ") and "\nimport lvmae_provenance_plugin\n" in text
    saved = tmp_path / "operative_config.gin"
    saved.write_text(text)
    check = ("import gin; from lvmae.experiments.engine import gin_config; "
             f"gin_config.parse([{str(saved)!r}], []); print(gin.query_parameter('dataset.provenance_probe.size'))")
    # No entry point on this path: only the config's own import line can register the plugin.
    (tmp_path / "lvmae_provenance_plugin-0.3.dist-info" / "entry_points.txt").unlink()
    result = subprocess.run([sys.executable, "-c", check], cwd=ROOT, capture_output=True, text=True,
                            env={**lvmae_env(tmp_path / "runs"), "PYTHONPATH": os.pathsep.join(
                                filter(None, [str(tmp_path), os.environ.get("PYTHONPATH")]))}, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().splitlines()[-1] == "7"
