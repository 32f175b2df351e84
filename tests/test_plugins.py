"""Third-party plugins: a throw-away module found through a gin `import` line and through the
`lvmae.plugins` entry-point group, then used from a gin file."""
from __future__ import annotations

import sys
import textwrap

import gin
import pytest
import torch

from lvmae import registry
from lvmae.components.masking.plan import TokenGrid
from lvmae.experiments.engine import gin_config

PLUGIN = textwrap.dedent('''
    import torch
    from lvmae.components.masking.base import DecoderMasking
    from lvmae.registry import register

    @register("masking.decoder.{name}")
    class FirstTokens(DecoderMasking):
        """Reconstructs the first `count` encoder-masked tokens (a deterministic toy rule)."""
        def __init__(self, first: int = 2):
            self.first = first

        def count(self, grid, kept):
            return min(self.first, grid.n - kept)

        def __call__(self, grid, enc_keep_idx, generator, scores=None):
            masked = torch.ones(enc_keep_idx.shape[0], grid.n, dtype=torch.bool)
            masked.scatter_(1, enc_keep_idx, False)
            return torch.stack([row.nonzero()[: self.first, 0] for row in masked])
''')


@pytest.fixture
def plugin_dir(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    for name in [m for m in sys.modules if m.startswith("lvmae_test_plugin")]:
        del sys.modules[name]


@gin.configurable("pick", module="lvmae_tests")
def pick(strategy=gin.REQUIRED):
    """A stand-in experiment function with one slot for a decoder strategy."""
    return strategy


def _uses_plugin(gin_file) -> None:
    gin_config.parse([str(gin_file)], [])
    strategy = pick()
    keep = torch.tensor([[0, 1], [1, 3]])
    # first = 3 from the gin file: the first three tokens the encoder did not keep.
    assert strategy(TokenGrid(1, 2, 3), keep, torch.Generator()).tolist() == [[2, 3, 4], [0, 2, 4]]


def test_plugin_through_gin_import_line(plugin_dir):
    (plugin_dir / "lvmae_test_plugin_a.py").write_text(PLUGIN.format(name="first_tokens_a"))
    gin_file = plugin_dir / "use.gin"
    gin_file.write_text(textwrap.dedent("""
        import lvmae_test_plugin_a
        pick.strategy = @masking.decoder.first_tokens_a()
        masking.decoder.first_tokens_a.first = 3
    """))
    with registry.temporary():
        _uses_plugin(gin_file)
        assert "first_tokens_a" in registry.names("masking.decoder")
    assert "first_tokens_a" not in registry.names("masking.decoder")


def test_plugin_through_entry_point_group(plugin_dir):
    (plugin_dir / "lvmae_test_plugin_b.py").write_text(PLUGIN.format(name="first_tokens_b"))
    dist = plugin_dir / "lvmae_test_plugin_b-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: lvmae-test-plugin-b\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(
        f"[{registry.ENTRY_POINT_GROUP}]\nfirst_tokens_b = lvmae_test_plugin_b\n")
    gin_file = plugin_dir / "use.gin"
    gin_file.write_text(textwrap.dedent("""
        pick.strategy = @masking.decoder.first_tokens_b()
        masking.decoder.first_tokens_b.first = 3
    """))
    with registry.temporary():
        assert "lvmae_test_plugin_b" in registry.load_entry_points()
        _uses_plugin(gin_file)


def _broken_plugin(folder) -> None:
    dist = folder / "broken-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: broken\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(f"[{registry.ENTRY_POINT_GROUP}]\nbroken = no_such_module_xyz\n")


def test_broken_entry_point_is_named_once_and_stops_only_what_uses_it(plugin_dir, capsys, monkeypatch):
    from lvmae.registry import discovery
    monkeypatch.setattr(discovery, "_FAILED", {})
    _broken_plugin(plugin_dir)
    with registry.temporary():
        registry.load_entry_points()              # the other plugins and lvmae's components load
        registry.load_entry_points()
    [line] = capsys.readouterr().err.splitlines()   # one paragraph, once per process
    assert line.startswith("lvmae: plugin 'broken' = 'no_such_module_xyz' (entry-point group 'lvmae.plugins', "
                           "distribution 'broken') failed to import: ModuleNotFoundError")
    assert "pip uninstall broken" in line
    assert "failed to import" in registry.unknown_name_message("masking.decoder.from_broken")
    with pytest.raises(registry.PluginImportError, match="'broken' = 'no_such_module_xyz'"):
        registry.load_entry_points(strict=True)


def test_a_plugin_packages_gin_files_are_found_by_name_through_its_entry_point(plugin_dir):
    package = plugin_dir / "lvmae_test_plugin_d"
    (package / "gin").mkdir(parents=True)
    (package / "__init__.py").write_text(PLUGIN.format(name="first_tokens_d"))
    (package / "gin" / "first_tokens_d.gin").write_text("pick.strategy = @masking.decoder.first_tokens_d()\n"
                                                       "include 'first_three.gin'\n")
    (package / "gin" / "first_three.gin").write_text("masking.decoder.first_tokens_d.first = 3\n")
    dist = plugin_dir / "lvmae_test_plugin_d-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: lvmae-test-plugin-d\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(f"[{registry.ENTRY_POINT_GROUP}]\nd = lvmae_test_plugin_d\n")
    assert str(package / "gin") in registry.plugin_folders()
    with registry.temporary():
        registry.load_entry_points()
        _uses_plugin("first_tokens_d.gin")     # -g NAME: no path, found in the package's gin folder


@pytest.mark.slow
def test_list_shows_origins_and_import_line_plugins_with_g(plugin_dir):
    import os

    from tests.cli import run_cli
    (plugin_dir / "lvmae_test_plugin_c.py").write_text(PLUGIN.format(name="first_tokens_c"))
    _broken_plugin(plugin_dir)             # installed, fails to import: named, and `list` still works
    gin_file = plugin_dir / "use.gin"
    gin_file.write_text("import lvmae_test_plugin_c\n")
    env = {"PYTHONPATH": os.pathsep.join(filter(None, [str(plugin_dir), os.environ.get("PYTHONPATH")]))}
    plain = run_cli(["list"], plugin_dir / "runs", env=env)
    with_file = run_cli(["list", "-g", str(gin_file)], plugin_dir / "runs", env=env)
    assert plain.returncode == 0 and with_file.returncode == 0, with_file.stderr[-2000:]
    assert plain.stderr.count("lvmae: plugin 'broken' = 'no_such_module_xyz'") == 1
    assert "-g FILE" in plain.stdout and "first_tokens_c" not in plain.stdout
    assert "masking.encoder.tube(keep_ratio=0.1)    [lvmae.components.masking.encoder_tube — lvmae]" in plain.stdout
    [line] = [l for l in with_file.stdout.splitlines() if "masking.decoder.first_tokens_c" in l]
    assert f"[lvmae_test_plugin_c — file {plugin_dir / 'lvmae_test_plugin_c.py'}" in line
