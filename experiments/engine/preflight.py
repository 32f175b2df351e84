"""Preflight: everything a run's configuration can be checked for *before* the run is recorded.

``run.py`` calls :func:`preflight` after parsing its command line and before Sacred creates
the run, so a bad configuration leaves no run behind (no FAILED entry in the database, no
folder in the file store) and is reported in one short paragraph. In order:

1. gin files and bindings parse (``gin_config.parse``: unknown names get suggestions);
2. every macro the command uses is set: an undefined ``%NAME`` or one declared
   ``NAME = %gin.REQUIRED`` names itself and how to set it;
3. every binding's value matches its parameter's annotation (``int``, ``float``, ``bool``,
   ``str``, ``Literal[...]``, ``X | None``, ``tuple[...]``/``list[...]``, classes) and range —
   a :class:`Range` in ``Annotated[int, Range(1)]``, else the conventions of
   :data:`COUNT_RANGES` (``steps`` ≥ 1, ``*_every`` ≥ 0, ...);
4. input paths the command reads (:data:`INPUT_PATH_PARAMETERS`: manifests, checkpoints,
   annotation files) exist;
5. every configured object the command's entry point is given (``pretrain_loop.model =
   @model.mae()``, ``%DATASET``...) is built — so a component's own validation runs — and
   each built component (a model and its parts) goes through the plugin kit's
   ``preflight_components``, which calls it once on the real token grid with a dummy batch;
6. every dataset keeps its labels under the augmentations of the data pipeline that reads it
   (``check_augmentations``: a flip on a left/right task is refused, naming both).

Only what the command reaches is checked for paths and built: the entry point
(``<command>_loop`` / ``<command>_job``, or the gin functions of the command's module) and
the references reachable from its bindings. Types are checked for every binding.
"""
from __future__ import annotations

import collections.abc
import dataclasses
import inspect
import os
import types
import typing
from collections.abc import Callable
from typing import Any

import gin.config as gin_lib

from lvmae.experiments.engine import gin_config, gin_helpers

EXPERIMENT_MODULE = "experiments"
# Parameters that name a file or folder the run reads (it must exist before the run starts).
RUN_PREFIX = "run:"   # an input given as a run of the producing stage (engine.run_folder)
INPUT_PATH_PARAMETERS = frozenset({"manifest", "manifest_path", "checkpoint", "pretrained", "init_from",
                                   "video_root", "annotations", "labels_path"})
# (configurable, parameter) pairs whose parameter name alone does not say it is an input path.
INPUT_PATH_BINDINGS = frozenset({("dataset.manifest", "path")})
# ``run:N`` inputs: (entry point, parameter) → the stage whose run folder N holds the checkpoint
# (``WORKDIR/<stage>/N/last.pt``, engine.run_folder.resolve_input).
RUN_INPUT_STAGES = {("finetune_loop", "pretrained"): "pretrain", ("probe_loop", "pretrained"): "pretrain",
                    ("evaluate_loop", "checkpoint"): "finetune"}
# Inputs read from WORKDIR when their parameter is left unset: (entry point, parameter) → the
# stage whose newest completed run (``WORKDIR/<stage>/last.pt``) the command reads instead.
DEFAULT_RUN_INPUTS = {("evaluate_loop", "checkpoint"): "finetune"}
WORKDIR_PARAMETER = "workdir"
RESUME_LAYOUT = ("world_size", "batch_size", "accum_steps")
ENTRY_SUFFIXES = ("_loop", "_job")


@dataclasses.dataclass(frozen=True)
class Range:
    """Annotation metadata: ``Annotated[int, Range(1)]`` accepts values ≥ 1 (``low``) and
    ≤ ``high`` when given."""
    low: float | None = None
    high: float | None = None

    def admits(self, value) -> bool:
        return (self.low is None or value >= self.low) and (self.high is None or value <= self.high)

    def __str__(self) -> str:
        if self.high is None:
            return f"≥ {self.low}"
        if self.low is None:
            return f"≤ {self.high}"
        return f"in [{self.low}, {self.high}]"


# The framework's conventions for numeric parameters that carry no Range of their own.
COUNT_RANGES: dict[str, Range] = {
    "steps": Range(1), "batch_size": Range(1), "accum_steps": Range(1), "epochs": Range(1),
    "warmup_steps": Range(0), "num_workers": Range(0), "workers": Range(0), "lr": Range(0),
    "weight_decay": Range(0), "clip_grad": Range(0),
}
EVERY_SUFFIX = "_every"     # log_every, checkpoint_every, ...: 0 (never) or more


class PreflightError(ValueError):
    """The configuration cannot run; the message names the binding, macro, path or component."""


def _display(selector: str) -> str:
    prefix = EXPERIMENT_MODULE + "."
    return selector.removeprefix(prefix)


def _binding_name(scope: str, selector: str, param: str) -> str:
    return f"{scope + '/' if scope else ''}{_display(selector)}.{param}"


# --- macros -------------------------------------------------------------------------------------
def _is_macro(value) -> bool:
    return isinstance(value, gin_lib.ConfigurableReference) and value.configurable.wrapped is gin_lib.macro


def _is_required_constant(value) -> bool:
    return (isinstance(value, gin_lib.ConfigurableReference)
            and value.configurable.wrapped is gin_lib._retrieve_constant  # pylint: disable=protected-access
            and "/".join(value.scopes) == "gin.REQUIRED")


def _macro_value(reference, used_by: str):
    """The value bound to macro ``%NAME`` (following macro chains); raises when it is unset."""
    seen = []
    while _is_macro(reference):
        name = "/".join(reference.scopes)
        if name in seen:
            raise PreflightError(f"macro %{name} refers to itself ({' → '.join(seen + [name])})")
        seen.append(name)
        bound = gin_lib._CONFIG.get((name, "gin.macro"), {})  # pylint: disable=protected-access
        if "value" not in bound:
            raise PreflightError(f"macro %{name} (used by {used_by}) is never set: add it to a gin file "
                                 f"or pass -b \"{name}=VALUE\"")
        reference = bound["value"]
        if _is_required_constant(reference):
            raise PreflightError(f"macro %{name} (used by {used_by}) is required: set it with "
                                 f"-b \"{name}=VALUE\" (the gin file declares it {name} = %gin.REQUIRED)")
    return reference


def _resolve(value, used_by: str):
    """``value`` with macros replaced by their values, inside lists/tuples/dicts too."""
    if _is_macro(value):
        return _resolve(_macro_value(value, used_by), used_by)
    if (isinstance(value, gin_lib.ConfigurableReference) and value.evaluate
            and value.configurable.selector in gin_helpers.SELECTORS):
        return value.scoped_configurable_fn()   # a path or number gin derives (path.join, ...)
    if isinstance(value, (list, tuple)):
        return type(value)(_resolve(v, used_by) for v in value)
    if isinstance(value, dict):
        return {k: _resolve(v, used_by) for k, v in value.items()}
    return value


# --- types and ranges ---------------------------------------------------------------------------
def _hints(function: Callable) -> dict[str, Any]:
    target = function.__init__ if isinstance(function, type) else function
    try:
        return typing.get_type_hints(target, include_extras=True)
    except Exception:  # noqa: BLE001  (an annotation that cannot resolve: keep the plain ones)
        annotations = getattr(target, "__annotations__", {})
        return {name: hint for name, hint in annotations.items() if not isinstance(hint, str)}


def _type_name(annotation) -> str:
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _type_name(typing.get_args(annotation)[0])
    if origin is typing.Literal:
        return "one of " + ", ".join(map(repr, typing.get_args(annotation)))
    if isinstance(annotation, type):
        return annotation.__name__
    return str(annotation).replace("typing.", "")


def matches(value, annotation) -> bool:
    """Whether a resolved gin value fits ``annotation`` (unknown annotations match)."""
    if annotation is Any or annotation is inspect.Parameter.empty:
        return True
    if isinstance(value, gin_lib.ConfigurableReference):
        return True        # an object or factory: checked when it is built
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Annotated:
        return matches(value, args[0])
    if origin in (typing.Union, types.UnionType):
        return any(matches(value, arg) for arg in args)
    if origin is typing.Literal:
        return value in args
    if annotation is type(None):
        return value is None
    if annotation is bool:
        return isinstance(value, bool)
    if annotation is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if annotation is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if annotation is str:
        return isinstance(value, str)
    if origin in (tuple, list, collections.abc.Sequence):
        if not isinstance(value, (list, tuple)):
            return False
        if origin is tuple and args and args[-1] is not Ellipsis:
            return len(value) == len(args) and all(matches(v, a) for v, a in zip(value, args))
        return not args or all(matches(v, args[0]) for v in value)
    if origin is dict:
        return isinstance(value, dict)
    if annotation in (tuple, list):
        return isinstance(value, (list, tuple))
    if isinstance(annotation, type):
        return isinstance(value, annotation) or callable(value)
    return True


def _range_of(param: str, annotation) -> Range | None:
    if typing.get_origin(annotation) is typing.Annotated:
        found = [a for a in typing.get_args(annotation)[1:] if isinstance(a, Range)]
        if found:
            return found[0]
    if param in COUNT_RANGES:
        return COUNT_RANGES[param]
    if param.endswith(EVERY_SUFFIX):
        return Range(0)
    return None


def check_binding(scope: str, selector: str, param: str, value, hints: dict[str, Any]) -> None:
    name = _binding_name(scope, selector, param)
    value = _resolve(value, name)
    annotation = hints.get(param, inspect.Parameter.empty)
    if not matches(value, annotation):
        raise PreflightError(f"{name} = {value!r}: expected {_type_name(annotation)} (the parameter's "
                             f"annotation), got {type(value).__name__}")
    bounds = _range_of(param, annotation)
    numeric = isinstance(value, (int, float)) and not isinstance(value, bool)
    if bounds is not None and numeric and not bounds.admits(value):
        raise PreflightError(f"{name} = {value!r}: must be {bounds}")


def check_types() -> None:
    """Every binding against its parameter's annotation and range."""
    for (scope, selector), params in list(gin_lib._CONFIG.items()):  # pylint: disable=protected-access
        if selector == "gin.macro":
            continue
        configurable = gin_lib._REGISTRY.get_match(selector)  # pylint: disable=protected-access
        if configurable is None:
            continue
        hints = _hints(configurable.wrapped)
        for param, value in params.items():
            check_binding(scope, selector, param, value, hints)


# --- what the command reaches -------------------------------------------------------------------
def entry_points(command: str, module: str | None = None) -> list[str]:
    """The gin selectors of ``command``'s entry point: ``experiments.<command>_loop`` or
    ``_job`` when one exists, else the gin functions defined in ``module``."""
    registry = gin_lib._REGISTRY  # pylint: disable=protected-access
    for suffix in ENTRY_SUFFIXES:
        selector = f"{EXPERIMENT_MODULE}.{command}{suffix}"
        if registry.get_match(selector) is not None:
            return [selector]
    if module is None:
        return []
    return [selector for selector, configurable in registry.items()
            if getattr(configurable.wrapped, "__module__", None) == module]


def _references(value):
    if isinstance(value, gin_lib.ConfigurableReference):
        yield value
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from _references(item)
    elif isinstance(value, dict):
        for item in value.values():
            yield from _references(item)


def reachable(roots: list[str]) -> list[tuple[str, str]]:
    """(scope, selector) of the roots and every configurable their bindings refer to."""
    config = gin_lib._CONFIG  # pylint: disable=protected-access
    seen: list[tuple[str, str]] = []
    todo = [("", root) for root in roots]
    while todo:
        key = todo.pop()
        if key in seen:
            continue
        seen.append(key)
        for value in config.get(key, {}).values():
            for reference in _references(value):
                if _is_macro(reference):
                    name = "/".join(reference.scopes)
                    todo.append((name, "gin.macro"))
                    continue
                todo.append(("/".join(reference.scopes), reference.configurable.selector))
    return seen


def check_paths(keys: list[tuple[str, str]]) -> None:
    config = gin_lib._CONFIG  # pylint: disable=protected-access
    for scope, selector in keys:
        for param, value in config.get((scope, selector), {}).items():
            if param not in INPUT_PATH_PARAMETERS and (selector, param) not in INPUT_PATH_BINDINGS:
                continue
            name = _binding_name(scope, selector, param)
            path = _resolve(value, name)
            if isinstance(path, str) and path.startswith(RUN_PREFIX):
                _check_run_input(scope, selector, param, path, name)
                continue
            if isinstance(path, str) and path and not os.path.exists(path):
                raise PreflightError(f"{name} = {path!r}: no such file or folder (looked from {os.getcwd()!r})")


def _parameter_value(scope: str, selector: str, param: str):
    """The value ``param`` of ``selector`` gets: its binding (macros resolved), else its default."""
    bound = gin_lib._CONFIG.get((scope, selector), {})  # pylint: disable=protected-access
    if param in bound:
        return _resolve(bound[param], _binding_name(scope, selector, param))
    configurable = gin_lib._REGISTRY.get_match(selector)  # pylint: disable=protected-access
    if configurable is None:
        return None
    default = inspect.signature(configurable.wrapped).parameters.get(param)
    return None if default is None or default.default is inspect.Parameter.empty else default.default


def _check_run_input(scope: str, selector: str, param: str, spec: str, name: str) -> None:
    """``run:N`` must name a run of the producing stage that holds a checkpoint."""
    from lvmae.experiments.engine.run_folder import resolve_input
    stage = RUN_INPUT_STAGES.get((selector.rsplit(".", 1)[-1], param))
    workdir = _parameter_value(scope, selector, WORKDIR_PARAMETER)
    if stage is None or not isinstance(workdir, str):
        return
    try:
        resolve_input(spec, workdir, stage, name)
    except (FileNotFoundError, ValueError) as error:
        raise PreflightError(str(error)) from None


def check_default_inputs(roots: list[str]) -> None:
    """An input left unset that the command then reads from WORKDIR (:data:`DEFAULT_RUN_INPUTS`)
    must exist there."""
    from lvmae.experiments.engine.run_folder import CHECKPOINT_NAME
    for root in roots:
        entry = root.rsplit(".", 1)[-1]
        for (loop, param), stage in DEFAULT_RUN_INPUTS.items():
            workdir = _parameter_value("", root, WORKDIR_PARAMETER)
            if loop != entry or _parameter_value("", root, param) or not isinstance(workdir, str):
                continue
            path = os.path.join(workdir, stage, CHECKPOINT_NAME)
            if not os.path.exists(path):
                raise PreflightError(f"{_display(root)}.{param} is unset, so the run reads {path!r} (the newest "
                                     f"completed {stage} run), which does not exist (looked from {os.getcwd()!r}): "
                                     f"run {stage} first or pass -b \"{_display(root)}.{param}='PATH'\" (or 'run:N')")


def check_required(roots: list[str]) -> None:
    """A parameter of an entry point declared ``gin.REQUIRED`` must be bound (gin itself says so
    only when the run calls it, after the run is recorded)."""
    config = gin_lib._CONFIG  # pylint: disable=protected-access
    for root in roots:
        configurable = gin_lib._REGISTRY.get_match(root)  # pylint: disable=protected-access
        if configurable is None:
            continue
        bound = config.get(("", root), {})
        missing = [name for name, parameter in inspect.signature(configurable.wrapped).parameters.items()
                   if parameter.default is gin_lib.REQUIRED and name not in bound]
        if missing:
            example = _binding_name("", root, missing[0])
            raise PreflightError(f"{_display(root)} needs {', '.join(missing)}: nothing binds "
                                 f"{'it' if len(missing) == 1 else 'them'} (add to a gin file or pass "
                                 f"-b \"{example} = ...\")")


def check_macros(keys: list[tuple[str, str]]) -> None:
    config = gin_lib._CONFIG  # pylint: disable=protected-access
    for scope, selector in keys:
        for param, value in config.get((scope, selector), {}).items():
            _resolve(value, _binding_name(scope, selector, param))


# Kinds whose built objects go through the plugin kit's preflight_components; a dataset's
# check writes its shards (generated datasets), which is the command's work, not preflight's.
KIT_SKIPS_KINDS = frozenset({"dataset"})


def check_components(built: dict[str, Any], batches: dict[str, dict] | None = None) -> list[str]:
    """Each built component through ``lvmae.components.kit.preflight_components`` (one call on
    the experiment's real grid with a real batch of its data pipeline, ``batches[name]``, or a
    dummy batch of the real shapes); returns what it checked."""
    from lvmae import registry
    from lvmae.components.kit import CHECKS, preflight_components
    checked = []
    for name, obj in built.items():
        entry = registry.entry_of(obj)
        if entry is None or entry.kind in KIT_SKIPS_KINDS or (entry.kind != "model" and entry.kind not in CHECKS):
            continue
        try:
            checked += preflight_components(obj, batch=(batches or {}).get(name))
        except Exception as error:
            raise PreflightError(f"{name}: {type(error).__name__}: {error}") from error
    return checked


def build_objects(roots: list[str], skip_missing_inputs: bool = False) -> dict[str, Any]:
    """Builds every evaluated reference bound to a root's parameters (``@model.mae()``,
    ``%DATASET``); a factory bound without ``()`` is left to the command. Returns
    ``{binding: object}``. ``skip_missing_inputs``: an object whose construction fails for a
    missing file is left out (it reads what an earlier stage has not written yet)."""
    config = gin_lib._CONFIG  # pylint: disable=protected-access
    built = {}
    for root in roots:
        for param, value in config.get(("", root), {}).items():
            name = _binding_name("", root, param)
            value = _resolve(value, name)
            if not isinstance(value, gin_lib.ConfigurableReference) or not value.evaluate:
                continue
            try:
                built[name] = value.scoped_configurable_fn()
            except Exception as error:
                if skip_missing_inputs and _missing_file(error):
                    continue
                message = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
                message = gin_config.missing_arguments(error) or message     # names the registered component
                raise PreflightError(f"building {name} = {value!r} failed: {type(error).__name__}: "
                                     f"{message}") from error
    return built


PIPELINE_PARAMETER = "pipeline"


def _reads_default_pipeline(root: str) -> bool:
    """Whether the entry point reads its dataset through the gin-bound ``data_pipeline`` when its
    ``pipeline`` parameter is left unset (annotated ``DataPipeline | None``, as every loop is)."""
    from lvmae.components.data.reading.pipeline import DataPipeline
    configurable = gin_lib._REGISTRY.get_match(root)  # pylint: disable=protected-access
    if configurable is None:
        return False
    hint = _hints(configurable.wrapped).get(PIPELINE_PARAMETER)
    return hint is DataPipeline or DataPipeline in typing.get_args(hint)


def check_augmentations(roots: list[str], built: dict[str, Any], check_inputs: bool = True) -> None:
    """Every dataset an entry point reads through a data pipeline (its ``pipeline`` binding, else
    the gin-bound ``data_pipeline``) keeps its labels under that pipeline's augmentations
    (components/data/formats/label_safety.py): a horizontal flip on a left/right task stops here."""
    from lvmae.components.data.datasets.base import Dataset
    from lvmae.components.data.reading.pipeline import DataPipeline
    for root in roots:
        prefix = _display(root) + "."
        mine = {name: obj for name, obj in built.items() if name.startswith(prefix)}
        datasets = {name: obj for name, obj in mine.items() if isinstance(obj, Dataset)}
        if not datasets:
            continue
        pipelines = [obj for obj in mine.values() if isinstance(obj, DataPipeline)]
        if not pipelines and _reads_default_pipeline(root):
            pipelines = [DataPipeline()]
        for pipeline in pipelines:
            for name, dataset in datasets.items():
                try:
                    pipeline.check_labels_kept(dataset, used_as=name)
                except FileNotFoundError as error:     # a manifest an earlier stage writes
                    if check_inputs:
                        raise PreflightError(str(error)) from None
                except ValueError as error:     # refused, or a manifest that cannot be read
                    raise PreflightError(str(error)) from None


def check_data(roots: list[str], built: dict[str, Any], check_inputs: bool = True) -> None:
    """Every shard of each manifest an entry point reads (a ``manifest`` path, a built
    ``dataset.manifest`` or ``dataset.mixture``) exists with the size the manifest recorded
    (components/data/formats/shard_index.py): a missing or changed shard stops here, naming it."""
    from lvmae.components.data.formats.shard_index import ShardCheckError, check_dataset_shards
    for root in roots:
        prefix = _display(root) + "."
        sources = [obj for name, obj in built.items() if name.startswith(prefix)]
        sources += [_parameter_value("", root, param) for param in ("manifest", "manifest_path")]
        for source in sources:
            try:
                check_dataset_shards(source)
            except FileNotFoundError as error:     # a manifest an earlier stage writes
                if check_inputs:
                    raise PreflightError(str(error)) from None
            except ShardCheckError as error:
                raise PreflightError(str(error)) from None


# Clips of the real batch the preflight reads through the configured pipeline.
REAL_BATCH_CLIPS = 2


def real_batches(roots: list[str], built: dict[str, Any]) -> dict[str, dict]:
    """``{binding: batch}``: for each pre-training model an entry point is given together with a
    dataset, one batch of that dataset read through the entry point's data pipeline (its
    ``pipeline`` binding, else the gin-bound ``data_pipeline``), in the main process — real
    pixels, normalised as the run sees them, and any precomputed fields. A generated dataset
    writes its shards here (the run would, next)."""
    import copy

    from lvmae.components.data.datasets.base import Dataset
    from lvmae.components.data.reading.pipeline import DataPipeline
    from lvmae.components.models.mae import VideoMAE
    batches = {}
    for root in roots:
        prefix = _display(root) + "."
        mine = {name: obj for name, obj in built.items() if name.startswith(prefix)}
        models = [name for name, obj in mine.items() if isinstance(obj, VideoMAE)]
        datasets = [obj for obj in mine.values() if isinstance(obj, Dataset)]
        pipelines = [obj for obj in mine.values() if isinstance(obj, DataPipeline)]
        if not pipelines and _reads_default_pipeline(root):
            pipelines = [DataPipeline()]
        if not (models and datasets and pipelines):
            continue
        pipeline = copy.copy(pipelines[0])
        pipeline.workers, pipeline.shuffle_buffer, pipeline.pin_memory = 0, 0, False
        try:
            batch = next(iter(pipeline.loader(datasets[0], "train", mode="train", batch_size=REAL_BATCH_CLIPS)))
        except Exception as error:
            raise PreflightError(f"reading one batch of {getattr(datasets[0], 'display_name', datasets[0])} through "
                                 f"{pipeline.gin_name} failed: {type(error).__name__}: {error}") from error
        batches.update({name: batch for name in models})
    return batches


def _missing_file(error: BaseException) -> bool:
    """Whether ``error`` (or what caused it) is a missing file or folder."""
    while error is not None:
        if isinstance(error, FileNotFoundError):
            return True
        error = error.__cause__ or error.__context__
    return False


@dataclasses.dataclass(frozen=True)
class ResumeRequest:
    """``--resume-run RUN_ID`` with the command line's seed (None: not given) and the stage
    folder the command's runs work in (``WORKDIR/<stage>/<run id>``)."""
    run_id: int
    seed: int | None
    stage: str


def check_resume(command: str, roots: list[str], request: ResumeRequest) -> None:
    """The engine's resume check (seed, command, bindings) on run N's checkpoint, before run N's
    record is reopened: a refused resume leaves the run's status and stored configuration as
    they were, so ``run.py resume N`` still continues it."""
    from lvmae.experiments import program
    from lvmae.experiments.engine import checkpoints, run_folder
    workdir = _parameter_value("", roots[0], WORKDIR_PARAMETER) if roots else None
    if not isinstance(workdir, str):
        return
    recorded = run_folder.requested_folder() if run_folder.requested_resume() == str(request.run_id) else None
    folder = run_folder.run_folder(workdir, request.stage, recorded or str(request.run_id))
    try:
        found = checkpoints.load_latest(folder, mmap=True)     # metadata only: seconds for any size
    except checkpoints.ResumeRefused as error:
        raise PreflightError(f"--resume-run {request.run_id}: {error}") from None
    if found is None:
        return          # the engine starts run N from step 0 and says so
    state, path = found
    if str(state.get("run_id")) != str(request.run_id):
        raise PreflightError(f"--resume-run {request.run_id}: {path!r} holds run {state.get('run_id')}'s checkpoint, "
                             f"not run {request.run_id}'s: another run's folder; nothing was resumed")
    if request.seed is None:
        raise PreflightError(f"--resume-run {request.run_id}: give the run's seed, `with seed={state.get('seed')}` "
                             f"(or continue it with {program.name()} resume {request.run_id}); a seed is never replaced")
    layout = {key: state.get(key) for key in RESUME_LAYOUT}     # the engine checks the batch layout
    try:
        checkpoints.check_resumable(state, path, command=command, loop=roots[0].rsplit(".", 1)[-1],
                                    seed=request.seed, layout=layout, bindings=checkpoints.flat_bindings())
    except checkpoints.ResumeRefused as error:
        raise PreflightError(f"--resume-run {request.run_id}: {error}") from None


def warn_disk_space(roots: list[str], built: dict[str, Any]) -> None:
    """One line on stderr when an entry point's WORKDIR cannot hold the two checkpoints a run of
    its model keeps (``disk_space.room_warning``); the run still starts."""
    import sys

    from torch import nn

    from lvmae.experiments.engine import disk_space
    for root in roots:
        workdir = _parameter_value("", root, WORKDIR_PARAMETER)
        prefix = _display(root) + "."
        models = [obj for name, obj in built.items() if name.startswith(prefix) and isinstance(obj, nn.Module)]
        if not isinstance(workdir, str) or not models:
            continue
        warning = disk_space.room_warning(workdir, max(models, key=disk_space.model_checkpoint_bytes))
        if warning:
            print(f"preflight: {warning}", file=sys.stderr)


def preflight(command: str, gin_files: list[str], gin_bindings: list[str], module: str | None = None,
              build: bool = True, resume: ResumeRequest | None = None, check_inputs: bool = True) -> dict[str, Any]:
    """Runs every check for ``command``; raises :class:`PreflightError` (or GinConfigError)
    naming what is wrong. Returns the objects it built (``{binding: object}``). ``resume``:
    ``--resume-run``'s checkpoint must accept this configuration. ``check_inputs=False`` checks a
    stage whose inputs earlier stages have not written yet (a study before it runs): missing
    input files are not errors, and objects that cannot be built without them are skipped."""
    gin_config.parse(list(gin_files), list(gin_bindings))
    roots = entry_points(command, module)
    keys = reachable(roots)
    check_macros(keys)
    check_types()
    check_required(roots)
    if check_inputs:
        check_paths(keys)
        check_default_inputs(roots)
    if resume is not None:
        check_resume(command, roots, resume)
    if not build:
        return {}
    built = build_objects(roots, skip_missing_inputs=not check_inputs)
    check_augmentations(roots, built, check_inputs)
    check_data(roots, built, check_inputs)
    check_components(built, real_batches(roots, built) if check_inputs else None)
    warn_disk_space(roots, built)
    return built
