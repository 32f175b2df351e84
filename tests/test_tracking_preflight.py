"""Preflight: a bad configuration fails before the run is recorded — one paragraph naming the
binding, macro, path or component, exit status 2, no run in the store — and run.py's help and
`list` answer without a run."""
from __future__ import annotations

import shlex
from typing import Annotated, Literal

import gin
import pytest

from lvmae.experiments.commands import cli, command_index
from lvmae.experiments.engine.preflight import PreflightError, Range, check_components, matches, preflight
from tests.cli import run_cli

TINY = "gin/experiments/tiny_cpu.gin"


@pytest.fixture(autouse=True)
def _clean_gin():
    gin.clear_config()
    yield
    gin.clear_config()


def _fail(bindings: list[str], command: str = "pretrain", files: tuple[str, ...] = (TINY,)) -> str:
    from lvmae.experiments import commands  # the command modules register their gin functions
    commands.load_all()
    with pytest.raises(PreflightError) as error:
        preflight(command, list(files), bindings, module=command_index()[command].module)
    return str(error.value)


@pytest.mark.parametrize("value, annotation, expected", [
    (3, int, True), (True, int, False), (3.5, int, False), ("five", int, False), (3, float, True),
    ("fp32", Literal["auto", "fp32"], True), ("fp16", Literal["auto", "fp32"], False),
    (None, int | None, True), ((0.9, 0.95), tuple[float, float], True), ((0.9,), tuple[float, float], False),
    ([1, 2, 3], list[int], True), ([1, "a"], list[int], False), (4, Annotated[int, Range(1)], True),
])
def test_values_are_matched_against_annotations(value, annotation, expected):
    assert matches(value, annotation) is expected


def test_a_string_where_an_int_is_declared_names_the_binding_and_type():
    message = _fail(["pretrain_loop.steps='five'"])
    assert "pretrain_loop.steps" in message and "expected int" in message and "got str" in message


def test_a_value_outside_a_literal_lists_the_choices():
    assert "expected one of 'auto', 'fp32', 'bf16'" in _fail(["pretrain_loop.precision='fp16'"])


def test_write_shards_choices_are_checked_before_the_run():
    message = _fail(["write_shards_job.annotation_format = 'epic'"], command="write_shards", files=())
    assert "write_shards_job.annotation_format" in message and "'epic100'" in message


def test_a_value_out_of_range_is_refused():
    assert "pretrain_loop.steps = -5: must be ≥ 1" in _fail(["pretrain_loop.steps=-5"])
    assert "checkpoint_every" in _fail(["pretrain_loop.checkpoint_every=-1"])


def test_undefined_and_required_macros_name_themselves():
    message = _fail(["pretrain_loop.log_every=%NOT_SET_ANYWHERE"])
    assert "%NOT_SET_ANYWHERE" in message and "pretrain_loop.log_every" in message
    message = _fail(["MY_STEPS = %gin.REQUIRED", "pretrain_loop.steps = %MY_STEPS"])
    assert "%MY_STEPS" in message and "required" in message and '-b "MY_STEPS=VALUE"' in message


def test_an_unbound_required_parameter_is_named_before_the_run():
    message = _fail(["EXPERIMENT = 'x'", "probe_loop.encoder = @backbone.vit()"], command="probe",
                    files=("gin/paths.gin",))
    assert "probe_loop needs dataset:" in message and '-b "probe_loop.dataset = ..."' in message


def test_the_manifest_file_declares_its_macro_required():
    message = _fail(["DATASET = @dataset.manifest()"], files=[TINY, "gin/data/manifest.gin"])
    assert "macro %MANIFEST" in message and "is required" in message


def test_a_missing_input_path_is_named_only_for_the_command_that_reads_it(tmp_path):
    message = _fail(["DATASET = @dataset.manifest()", f"dataset.manifest.path = '{tmp_path}/none.yaml'"])
    assert "dataset.manifest.path" in message and "none.yaml" in message
    # tiny_cpu.gin names finetune's pre-trained checkpoint, which pretrain does not read.
    gin.clear_config()
    preflight("pretrain", [TINY], ["finetune_loop.pretrained = '/no/such/last.pt'"],
              module=command_index()["pretrain"].module)


def test_a_run_input_without_a_checkpoint_is_named_before_the_run(tmp_path):
    """``PRETRAINED='run:N'`` must name a pre-training run of WORKDIR that holds a checkpoint."""
    workdir = f"WORKDIR = '{tmp_path}'"
    message = _fail([workdir, "PRETRAINED = 'run:999'"], command="finetune")
    assert "finetune_loop.pretrained" in message and "run 999" in message
    folder = tmp_path / "pretrain" / "7"
    folder.mkdir(parents=True)
    (folder / "last.pt").write_bytes(b"")
    gin.clear_config()
    preflight("finetune", [TINY], [workdir, "PRETRAINED = 'run:7'"], module=command_index()["finetune"].module,
              build=False)


def test_a_resume_its_checkpoint_refuses_is_stopped_before_the_run_is_reopened(tmp_path):
    """``--resume-run N`` with a changed binding or without the seed fails in preflight (so run
    N's record keeps its status and configuration), naming what differs; an unchanged
    configuration (only ``steps`` longer) passes."""
    from lvmae.experiments import commands
    from lvmae.experiments.engine import checkpoints
    from lvmae.experiments.engine.preflight import ResumeRequest
    commands.load_all()
    module = command_index()["pretrain"].module
    bindings = [f"WORKDIR = '{tmp_path}'", "pretrain_loop.steps = 40"]
    preflight("pretrain", [TINY], bindings, module=module, build=False)
    checkpoints.save_rotating(str(tmp_path / "pretrain" / "7"), {
        "format": checkpoints.FORMAT, "version": checkpoints.FORMAT_VERSION, "command": "pretrain", "run_id": "7",
        "seed": 3, "step": 10, "bindings": checkpoints.flat_bindings()})

    def resume(extra: list[str], seed: int | None = 3) -> None:
        gin.clear_config()
        preflight("pretrain", [TINY], bindings + extra, module=module, build=False,
                  resume=ResumeRequest(7, seed, "pretrain"))

    resume(["pretrain_loop.steps = 80"])
    with pytest.raises(PreflightError, match=r"pretrain_loop\.lr: 0\.001 → 0\.002"):
        resume(["pretrain_loop.lr = 0.002"])
    with pytest.raises(PreflightError, match="with seed=3"):
        resume([], seed=None)
    with pytest.raises(PreflightError, match="seed 3"):
        resume([], seed=4)
    # the folder run 7 recorded holds another run's checkpoint (a collision): refused, naming both
    from lvmae.experiments.engine import run_folder
    checkpoints.save_rotating(str(tmp_path / "pretrain" / "7-other"), {
        "format": checkpoints.FORMAT, "version": checkpoints.FORMAT_VERSION, "command": "pretrain", "run_id": "2",
        "seed": 3, "step": 10, "bindings": {}})
    run_folder.request_resume(7, str(tmp_path / "pretrain" / "7-other"))
    try:
        with pytest.raises(PreflightError, match=r"7-other/last\.pt' holds run 2's checkpoint, not run 7's"):
            resume([])
    finally:
        run_folder.request_resume(None)


def test_evaluate_without_a_finetuned_checkpoint_is_named_before_the_run(tmp_path):
    """``evaluate_loop.checkpoint`` unset reads WORKDIR/finetune/last.pt: it must exist."""
    workdir = f"WORKDIR = '{tmp_path}'"
    message = _fail([workdir], command="evaluate")
    assert "evaluate_loop.checkpoint" in message and str(tmp_path / "finetune" / "last.pt") in message
    (tmp_path / "finetune").mkdir()
    (tmp_path / "finetune" / "last.pt").write_bytes(b"")
    gin.clear_config()
    preflight("evaluate", [TINY], [workdir], module=command_index()["evaluate"].module, build=False)


def test_a_component_that_rejects_its_arguments_is_named_when_built():
    message = _fail(["masking.decoder.random.budget = 1.5"])
    assert "pretrain_loop.model" in message and "masking.decoder.random.budget" in message


def test_a_good_configuration_builds_the_entry_points_objects_and_the_kit_calls_them():
    from lvmae.experiments import commands
    commands.load_all()
    built = preflight("pretrain", [TINY], [], module=command_index()["pretrain"].module)
    assert {"pretrain_loop.model", "pretrain_loop.dataset"} <= set(built)
    checked = " ".join(check_components(built))
    assert "masking.decoder.random" in checked and "masking.encoder.tube" in checked


def test_a_component_the_kit_rejects_fails_preflight_naming_the_binding(monkeypatch):
    from lvmae.components import kit

    def broken(component, **_):
        raise kit.ContractError(component, "returned 3 targets, declared 5")

    monkeypatch.setattr(kit, "preflight_components", broken)
    message = _fail([])
    assert message.startswith("pretrain_loop.model: ContractError: 'model.mae'") and "declared 5" in message


@pytest.mark.parametrize("binding, culprit", [
    ("pretrain_loop.steps='five'", "pretrain_loop.steps = 'five': expected int"),
    ("pretrain_loop.steps=-5", "pretrain_loop.steps = -5: must be ≥ 1"),
])
def test_cli_error_is_one_paragraph_and_records_nothing(tmp_path, binding, culprit):
    """(Its wall time is not asserted: it depends on the machine and its load.)"""
    runs = tmp_path / "runs"
    result = run_cli(["pretrain", "-g", TINY, "-b", binding], runs, env={"LVMAE_OBSERVER": "file"})
    assert result.returncode == cli.PREFLIGHT_STATUS, result.stderr
    assert culprit in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) <= 4, result.stderr
    assert not runs.exists() or not any(runs.glob("[0-9]*"))


def test_debug_shows_the_traceback(tmp_path):
    result = run_cli(["pretrain", "-g", TINY, "-b", "pretrain_loop.steps=-5", "--debug"], tmp_path / "runs",
                     env={"LVMAE_OBSERVER": "file"})
    assert result.returncode != 0 and "Traceback" in result.stderr


def test_help_lists_every_command_tool_and_option(tmp_path):
    result = run_cli(["--help"], tmp_path / "runs")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    for name in [*command_index(), "print_config", "db", "board", "report", "sweep", "resume"]:
        assert any(line.split()[:1] == [name] for line in lines), name
    for option in ("-g FILE", "-b BINDING", "--tag TAG"):
        assert option in result.stdout


def test_help_examples_work_as_written(tmp_path):
    """Every ``python run.py ...`` example of --help parses (run unobserved, stopped by
    preflight-only checks: print_config runs; pretrain is checked with -u and 1 step)."""
    examples = [shlex.split(line.strip())[2:] for line in cli.help_text().splitlines()
                if line.strip().startswith("python run.py")]
    assert examples
    for args in examples:
        if args[0] == "report":
            continue          # needs a database with runs: covered by the tracking tests
        if args[0] == "pretrain":    # one step, unobserved, in a temporary work folder
            args = [a.replace("steps=20", "steps=1") for a in args] + [
                "-u", "-b", f"pretrain_loop.workdir='{tmp_path}/work'"]
        result = run_cli(args, tmp_path / "runs", env={"LVMAE_OBSERVER": "file"})
        assert result.returncode == 0, (args, result.stderr[-2000:])


def test_the_command_index_reads_sources_without_importing_them():
    index = command_index()
    assert {"pretrain", "finetune", "list", "seeds"} <= set(index)
    assert index["pretrain"].module == "lvmae.experiments.commands.pretrain"
    assert all(info.summary for info in index.values())


def test_list_and_help_import_no_other_command(tmp_path):
    probe = ("import sys; from lvmae.experiments.commands import cli; cli.main(['run.py', '--help']); "
             "print(sorted(m for m in sys.modules if m.startswith('lvmae.experiments.commands.')))")
    import subprocess
    import sys
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "['lvmae.experiments.commands.cli']"
