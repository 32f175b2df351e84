"""docs/plugins.md (and README's one-file plugin) run as written: every Python block is written
to the file its first line names, imported, and every component it registers passes the
contract kit; every gin block parses with those modules importable; the test block's tests
pass; the packaging block is valid TOML with the entry-point group."""
from __future__ import annotations

import importlib
import re
import sys
from pathlib import Path

import gin
import pytest
import tomllib

from lvmae import registry
from lvmae.components import kit
from lvmae.experiments.engine import gin_config

ROOT = Path(__file__).resolve().parents[1]
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.DOTALL | re.MULTILINE)
FILE_LINE = re.compile(r"^# (\w+)\.py\n")


def _blocks(page: str) -> list[tuple[str, str]]:
    return [(lang, body) for lang, body in FENCE.findall((ROOT / page).read_text())]


def _modules(blocks) -> dict[str, str]:
    modules = {}
    for lang, body in blocks:
        match = FILE_LINE.match(body) if lang == "python" else None
        if match:
            modules[match.group(1)] = body
    return modules


@pytest.fixture
def scratch(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(tmp_path))
    before = set(sys.modules)
    with registry.temporary():
        yield tmp_path
    for name in set(sys.modules) - before:
        if not name.startswith(("lvmae", "torch", "numpy")):
            del sys.modules[name]


def _import_all(modules: dict[str, str], folder: Path) -> dict[str, list[str]]:
    """Writes and imports the modules; returns module → the components it registered."""
    registered = {}
    for name, body in modules.items():
        (folder / f"{name}.py").write_text(body)
    for name in modules:
        if name.startswith("test_"):
            continue
        before = {e.full_name for e in registry.entries()}
        importlib.import_module(name)
        registered[name] = sorted({e.full_name for e in registry.entries()} - before)
    return registered


def test_every_kind_has_an_example_on_the_page():
    registered_kinds = set()
    for body in _modules(_blocks("docs/plugins.md")).values():
        registered_kinds |= {m.rsplit(".", 1)[0] for m in re.findall(r'@register\("([\w.]+)"\)', body)}
    assert registered_kinds == set(kit.CHECKS)


def test_plugins_page_examples_pass_the_kit_and_their_gin_files_parse(scratch):
    blocks = _blocks("docs/plugins.md")
    modules = _modules(blocks)
    registered = _import_all(modules, scratch)
    assert all(registered.values()), registered            # every module registers something
    for names in registered.values():
        for name in names:
            kwargs = {"root": str(scratch)} if name.startswith("dataset.") else {}
            kit.check_component(name, **kwargs)

    gin_blocks = [body for lang, body in blocks if lang == "gin"]
    assert len(gin_blocks) == len(registered)
    for index, body in enumerate(gin_blocks):
        path = scratch / f"example_{index}.gin"
        path.write_text(body)
        gin_config.parse([str(path)], [])
        [(_module, names)] = [(m, n) for m, n in registered.items() if f"import {m}\n" in body]
        for name in names:
            if name.startswith("dataset."):
                continue                                   # building it is cheap, preparing it writes shards
            if registry.get(name).kind in kit.FACTORY_KINDS:
                kit.check_component(name)                  # the model builds it with its sizes
            else:
                assert registry.build(name) is not None
        gin.clear_config()

    [test_module] = [name for name in modules if name.startswith("test_")]
    tests = importlib.import_module(test_module)
    functions = [getattr(tests, name) for name in dir(tests) if name.startswith("test_")]
    assert functions
    for function in functions:
        function()

    [toml] = [body for lang, body in blocks if lang == "toml"]
    assert "lvmae.plugins" in tomllib.loads(toml)["project"]["entry-points"]


def test_readme_one_file_plugin_runs_as_written(scratch):
    blocks = _blocks("README.md")
    modules = {name: body for name, body in _modules(blocks).items() if name == "my_masking"}
    registered = _import_all(modules, scratch)
    assert registered == {"my_masking": ["masking.decoder.last_frames"]}
    kit.check_component("masking.decoder.last_frames")
    [gin_body] = [body for _, body in blocks if body.startswith("import my_masking\n")]
    (scratch / "use.gin").write_text(gin_body)
    gin_config.parse([str(scratch / "use.gin")], [])
    assert registry.build("masking.decoder.last_frames").budget == 0.2


def test_check_component_by_name_in_a_plain_script(monkeypatch):
    """What the page says of ``check_component``: it discovers lvmae's components and the
    installed plugins itself (a plain script calls no ``registry.discover()``), and a required
    ``__init__`` argument nothing binds is named with the registered name and the binding."""
    from lvmae.components.kit import checks
    from lvmae.components.masking.base import DecoderMasking
    calls = []
    monkeypatch.setattr(checks.registry, "discover", lambda *a, **k: calls.append(a))
    checks.check_component("masking.decoder.random")
    assert calls, "check_component must discover the components before looking the name up"

    class NeedsBudget(DecoderMasking):
        def __init__(self, budget: float):
            self.budget = budget

        def count(self, grid, kept):
            return 1

        def __call__(self, grid, enc_keep_idx, generator, scores=None):
            return enc_keep_idx[:, :1]

    with registry.temporary():
        registry.register("masking.decoder.needs_budget")(NeedsBudget)
        with pytest.raises(TypeError, match=r"^'masking\.decoder\.needs_budget' \(.*NeedsBudget\) needs budget: "
                                            r"nothing binds it — add masking\.decoder\.needs_budget\.budget = \.\.\."):
            checks.check_component("masking.decoder.needs_budget")
        with pytest.raises(TypeError) as built_by_gin:      # a gin file's reference: the preflight's message
            gin.get_configurable("masking.decoder.needs_budget")()
        assert re.match(r"'masking\.decoder\.needs_budget' \(.*NeedsBudget\) needs budget: nothing binds it — "
                        r"add masking\.decoder\.needs_budget\.budget = \.\.\.",
                        gin_config.missing_arguments(built_by_gin.value))
