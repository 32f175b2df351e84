"""``run.py new KIND NAME`` writes a plugin, a gin file and a test that pass the kit as written."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from lvmae.experiments.commands import new

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_every_kind_scaffold_passes_its_own_generated_tests(tmp_path):
    result = subprocess.run([sys.executable, str(ROOT / "run.py"), "new", "masking.decoder", "my_mask",
                             "--dir", str(tmp_path)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    assert {"my_mask.py", "my_mask.gin", "test_my_mask.py"} <= {p.name for p in tmp_path.iterdir()}
    for kind in new.KINDS:
        if kind != "masking.decoder":
            new.write(kind, "my_" + kind.replace(".", "_"), str(tmp_path))
    tests = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)],
                           capture_output=True, text=True, cwd=tmp_path, check=False)
    assert tests.returncode == 0, tests.stdout[-3000:]
    assert f"{2 * len(new.KINDS)} passed" in tests.stdout


def test_a_broken_scaffold_fails_its_generated_test(tmp_path):
    """The generated test can fail: break the rule (duplicate targets) and it names the plugin."""
    new.write("masking.decoder", "broken_mask", str(tmp_path))
    module = tmp_path / "broken_mask.py"
    module.write_text(module.read_text().replace(
        "return noise.argsort(dim=1)[:, :self.count(grid, kept)]",
        "return noise.argsort(dim=1)[:, :1].expand(-1, self.count(grid, kept))"))
    tests = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                            "test_broken_mask.py"], capture_output=True, text=True, cwd=tmp_path, check=False)
    assert tests.returncode == 1
    assert "'masking.decoder.broken_mask' (broken_mask.BrokenMask): dec_target_idx repeats token" in tests.stdout


def test_new_refuses_bad_names_unknown_kinds_and_overwrites(tmp_path, capsys):
    assert new.main(["masking.decoder", "Bad-Name", "--dir", str(tmp_path)]) == 2
    assert "snake_case" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        new.main(["masking.sideways", "x", "--dir", str(tmp_path)])
    assert new.main(["scorer", "mine", "--dir", str(tmp_path)]) == 0
    before = (tmp_path / "mine.py").read_text()
    (tmp_path / "mine.py").write_text(before + "# my edits\n")
    assert new.main(["scorer", "mine", "--dir", str(tmp_path)]) == 2
    assert "already exist" in capsys.readouterr().err
    assert (tmp_path / "mine.py").read_text().endswith("# my edits\n")


def test_a_scaffold_written_into_components_has_no_import_line():
    from lvmae.experiments.commands.new import render
    from lvmae.experiments.engine.gin_config import GIN_ROOT
    outside = render("masking.decoder", "my_mask", "plugins")["my_mask.gin"]
    inside = render("masking.decoder", "my_mask", str(Path(GIN_ROOT) / "components" / "masking"))["my_mask.gin"]
    assert "\nimport my_mask\n" in outside
    assert "\nimport my_mask" not in inside and "lvmae imports every module under components/" in inside
