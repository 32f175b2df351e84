"""What a newcomer reads: help and usage name the program typed (``lvmae`` or ``python run.py``),
every refused input exits 2 with one paragraph (resume included), gin syntax errors point at
the real place with the line quoted, a missing gin file suggests the nearest shipped one, shipped
gin files resolve from any folder without gin logging errors, and commands that print a result
print no lint comments or Sacred INFO lines."""
from __future__ import annotations

import logging
import re

import pytest

from lvmae.experiments import program
from lvmae.experiments.commands import cli
from lvmae.experiments.engine import gin_config
from tests.cli import run_cli

TINY = "gin/experiments/tiny_cpu.gin"


@pytest.fixture(autouse=True)
def _program_name_restored(monkeypatch):
    """cli.main records the program name for the process; later tests see the one they set."""
    monkeypatch.setattr(program, "_typed", None)
    monkeypatch.delenv(program.PROGRAM_ENV, raising=False)


def _refused(argv: list[str], capsys) -> str:
    """Runs the CLI in-process; asserts exit status 2 and returns stderr."""
    with pytest.raises(SystemExit) as exit_info:
        cli.main(argv)
    err = capsys.readouterr().err
    assert exit_info.value.code == program.REFUSED_STATUS, (exit_info.value.code, err)
    return err


@pytest.mark.parametrize("argv0, typed", [("lvmae", "lvmae"), ("/venv/bin/lvmae", "lvmae"),
                                          ("run.py", "python run.py"), ("/repo/run.py", "python run.py")])
def test_help_names_the_program_typed(argv0, typed, capsys):
    cli.main([argv0, "--help"])
    out = capsys.readouterr().out
    assert out.startswith(f"usage: {typed} COMMAND")
    other = "python run.py" if typed == "lvmae" else "lvmae"
    assert not re.search(rf"(^|: |\n  ){re.escape(other)} ", out), out   # usage, tools, examples
    cli.main([argv0, "pretrain", "--help"])
    out = capsys.readouterr().out
    assert out.startswith(f"usage: {typed} pretrain [-g FILE]") and "Pre-trains a video MAE" in out


def test_sacred_usage_names_the_program_typed():
    from lvmae.experiments.commands import load_all
    program.remember("lvmae")
    short, usage, _ = load_all().get_usage()
    assert "lvmae COMMAND [(with UPDATE...)]" in usage and short.splitlines()[1].strip().startswith("lvmae [")
    program.remember("run.py")
    assert "python run.py COMMAND [(with UPDATE...)]" in load_all().get_usage()[1]


def test_a_child_process_names_the_parents_program(monkeypatch):
    monkeypatch.setenv(program.PROGRAM_ENV, "lvmae")
    program.remember("run.py")          # sweep's members run run.py (or the CLI module)
    assert program.name() == "lvmae"


@pytest.mark.parametrize("argv, expected", [
    (["lvmae", "pretrian"], "lvmae: unknown command 'pretrian'. Did you mean: pretrain"),
    (["run.py", "with", "seed=1"], "python run.py: name a command first"),
    (["lvmae", "help", "evalute"], "Did you mean: evaluate"),
    (["lvmae", "pretrain", "-g"], "lvmae: option -g needs a value"),
    (["lvmae", "pretrain", "--resume-run", "last"], "--resume-run needs a run id (an integer), got 'last'"),
])
def test_refused_command_lines_exit_2_naming_the_fault(argv, expected, capsys):
    assert expected in _refused(argv, capsys)


@pytest.mark.parametrize("updates, expected", [
    (["foo=1"], "with foo=...: unknown config entry 'foo'"),
    (["sed=3"], "unknown config entry 'sed' (did you mean 'seed'?)"),
    (["seed=abc"], "with seed='abc': the seed must be an integer"),
    (["gin_files=3"], "with gin_files=3: gin_files must be a string or a list of strings"),
    (["nameless"], "with nameless: there are no named configs"),
])
def test_refused_sacred_updates_exit_2_before_sacred(updates, expected, capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("LVMAE_RUNS_DIR", str(tmp_path))
    err = _refused(["lvmae", "tracking_check", "-u", "with", *updates], capsys)
    assert err.startswith("lvmae tracking_check: ") and expected in err and "Traceback" not in err


def test_resume_of_a_run_that_does_not_exist_exits_2_and_records_nothing(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("LVMAE_OBSERVER", "file")
    monkeypatch.setenv("LVMAE_RUNS_DIR", str(tmp_path / "runs"))
    err = _refused(["lvmae", "resume", "999"], capsys)
    assert err.startswith("lvmae resume: no run 999 under") and err.count("\n") == 1
    err = _refused(["run.py", "tracking_check", "--resume-run", "999"], capsys)
    assert err.startswith("python run.py tracking_check: --resume-run 999: cannot resume run 999: no run 999")
    assert not (tmp_path / "runs").exists()          # before: a fresh run 999 was recorded
    from lvmae.experiments.engine.run_folder import requested_resume
    assert requested_resume() is None


def test_resume_of_a_completed_run_without_new_steps_exits_2(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("LVMAE_OBSERVER", "file")
    monkeypatch.setenv("LVMAE_RUNS_DIR", str(tmp_path))
    (tmp_path / "4").mkdir()
    (tmp_path / "4" / "run.json").write_text('{"command": "pretrain", "status": "COMPLETED"}')
    (tmp_path / "4" / "config.json").write_text('{"seed": 1, "gin_files": [], "gin_bindings": []}')
    err = _refused(["lvmae", "resume", "4"], capsys)
    assert "run 4 (pretrain) is COMPLETED" in err and "lvmae resume 4 -b 'pretrain_loop.steps=N'" in err


def test_preflight_refusal_names_the_program(capsys):
    err = _refused(["lvmae", "pretrain", "-g", "gin/experiments/tiny_cpuu.gin"], capsys)
    assert err.startswith("lvmae pretrain: gin file not found: 'gin/experiments/tiny_cpuu.gin'")
    assert "did you mean 'gin/experiments/tiny_cpu.gin'?" in err


def test_shipped_gin_files_resolve_from_another_folder_without_gin_logging_errors(tmp_path, monkeypatch,
                                                                                     caplog):
    monkeypatch.chdir(tmp_path)
    with caplog.at_level(logging.DEBUG):
        gin_config.parse([TINY, "gin/experiments/lvmae_cpu.gin"], [])
    assert not [record.getMessage() for record in caplog.records if record.levelno >= logging.WARNING]
    assert not [record.getMessage() for record in caplog.records if "Path not found" in record.getMessage()]


def test_a_syntax_error_points_at_the_unclosed_bracket_with_the_line(tmp_path):
    path = tmp_path / "bad.gin"
    path.write_text(f"include '{TINY}'\npretrain_loop.steps = 20\nmasking.decoder.random.budget = [0.1,\n"
                    "  0.2\npretrain_loop.lr = 1e-3\n")
    with pytest.raises(gin_config.GinConfigError) as error:
        gin_config.parse([str(path)], [])
    message = str(error.value)
    assert f"in {str(path)!r}, line 3, column 33: '[' is never closed (gin stopped at line 5" in message
    assert message.endswith("\n    masking.decoder.random.budget = [0.1,\n" + " " * 36 + "^")


@pytest.mark.parametrize("text, where, quoted", [
    ("a.b = [1,\n", "line 1, column 7: '[' is never closed (gin stopped at the end of the file", "a.b = [1,"),
    ("pretrain_loop.steps = 1\npretrain_loop.lr = 3 3\n", "line 2, column 22: Expected newline",
     "pretrain_loop.lr = 3 3"),
])
def test_syntax_errors_in_files_and_includes_quote_the_line(tmp_path, monkeypatch, text, where, quoted):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "inner.gin").write_text(text)
    (tmp_path / "outer.gin").write_text("include 'inner.gin'\n")
    for top in ("inner.gin", "outer.gin"):
        with pytest.raises(gin_config.GinConfigError) as error:
            gin_config.parse([top], [])
        assert f"gin syntax error in 'inner.gin', {where}" in str(error.value)
        assert f"\n    {quoted}\n" in str(error.value)


def test_a_syntax_error_in_a_binding_quotes_it():
    with pytest.raises(gin_config.GinConfigError) as error:
        gin_config.parse([], ["pretrain_loop.steps = [1,"])
    assert "in the binding, line 1, column 23: '[' is never closed" in str(error.value)


def test_a_missing_gin_file_names_each_folder_once_and_the_nearest_shipped_file(monkeypatch, tmp_path):
    monkeypatch.chdir(gin_config.GIN_ROOT)
    with pytest.raises(gin_config.GinConfigError) as error:
        gin_config.parse(["gin/experiments/tiny_cpuu.gin"], [])
    message = str(error.value)
    assert message.count(repr(gin_config.GIN_ROOT)) == 1
    assert message.endswith("did you mean 'gin/experiments/tiny_cpu.gin'?")
    (tmp_path / "mine.gin").write_text("include 'gin/backbone/vit_tiny.gin'\n")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(gin_config.GinConfigError) as error:
        gin_config.parse(["mine.gin"], [])
    assert "gin file not found: 'gin/backbone/vit_tiny.gin' (an include line; looked in " in str(error.value)
    assert "did you mean 'gin/backbones/vit_tiny.gin'?" in str(error.value)


@pytest.mark.slow                     # two run.py subprocesses (seconds each)
def test_list_and_print_config_print_their_result_only(tmp_path):
    printed = run_cli(["print_config", "-g", TINY], tmp_path)
    listed = run_cli(["list"], tmp_path)
    for result in (printed, listed):
        assert result.returncode == 0, result.stderr[-2000:]
        both = result.stdout + result.stderr
        assert "noqa" not in both and "INFO" not in both and "ERROR" not in both, both[:3000]
    assert "gin_files = ['gin/experiments/tiny_cpu.gin']" in printed.stdout
    assert "gin files, applied in order (-g FILE)" in printed.stdout
    assert "masking.decoder.adaptive" in listed.stdout

