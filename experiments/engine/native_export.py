"""lvmae's own export: weights in safetensors and one JSON config, read back without the run store.

Layout (``DIR/lvmae/``):

=====================  ==========================================================================
``lvmae_config.json``  ``format`` = :data:`FORMAT`, ``version``, ``kind`` (mae, classifier,
                       tokenizer), the ``command`` and ``gin_config`` of the run, ``heads`` and
                       ``label_names`` of a classifier, ``tokenizer_config`` of a tokenizer, the
                       ``preprocessing`` the run used, ``files`` (name → what it holds), provenance
                       (``run_id``, ``seed``, ``step``, ``lvmae_version``)
``model.safetensors``  the MAE's or classifier's state dict (lvmae keys)
``tokenizer.safetensors``, ``scorer.safetensors``  a tokenizer export: the two parts' state dicts
=====================  ==========================================================================

:func:`load_export` rebuilds the module: a tokenizer from ``tokenizer_config`` (no gin), an MAE or
classifier from the stored gin config (``experiments/engine/checkpoint_model.py``).
"""
from __future__ import annotations

import json
import os

import torch
from torch import nn

FORMAT, VERSION = "lvmae-export", 1
FOLDER, CONFIG_NAME = "lvmae", "lvmae_config.json"
MODEL_FILE, TOKENIZER_FILE, SCORER_FILE = "model.safetensors", "tokenizer.safetensors", "scorer.safetensors"


class ExportError(ValueError):
    """An export folder that cannot be read; the message names the file and key."""


def lvmae_version() -> str:
    from importlib.metadata import PackageNotFoundError, version
    try:
        return version("lvmae")
    except PackageNotFoundError:
        return "unknown (not installed)"


def _save(path: str, state: dict[str, torch.Tensor]) -> None:
    from safetensors.torch import save_file
    save_file({k: v.detach().cpu().contiguous() for k, v in state.items()}, path)


def _sub_state(model: nn.Module, prefix: str) -> dict[str, torch.Tensor]:
    return {k[len(prefix):]: v for k, v in model.state_dict().items() if k.startswith(prefix)}


def write_native(folder: str, source) -> str:
    """Writes ``folder/lvmae/`` for a ``CheckpointModel``; returns that path."""
    out = os.path.join(folder, FOLDER)
    os.makedirs(out, exist_ok=True)
    state = source.state
    config = {"format": FORMAT, "version": VERSION, "kind": source.kind, "command": state["command"],
              "run_id": state.get("run_id"), "seed": state.get("seed"), "step": state.get("step"),
              "lvmae_version": lvmae_version(), "preprocessing": source.preprocessing,
              "gin_config": state.get("gin_config", "")}
    if source.kind == "tokenizer":
        tokenizer_state = _sub_state(source.model, "tokenizer.")
        _save(os.path.join(out, TOKENIZER_FILE), tokenizer_state)
        files = {TOKENIZER_FILE: "tokenizer"}
        if source.model.scorer is not None:
            _save(os.path.join(out, SCORER_FILE), _sub_state(source.model, "scorer."))
            files[SCORER_FILE] = "scorer"
        config.update(tokenizer_config=state["tokenizer_config"], files=files)
    else:
        _save(os.path.join(out, MODEL_FILE), source.model.state_dict())
        config["files"] = {MODEL_FILE: source.kind}
        if source.kind == "classifier":
            config.update(heads=dict(state["heads"]), label_names=source.label_names, grid=state.get("grid"))
    with open(os.path.join(out, CONFIG_NAME), "w", encoding="utf-8") as handle:
        json.dump(config, handle, indent=2)
    return out


def read_config(folder: str) -> tuple[dict, str]:
    """(``lvmae_config.json``, the folder holding it) for ``DIR`` or ``DIR/lvmae``."""
    for candidate in (os.path.join(folder, FOLDER), folder):
        path = os.path.join(candidate, CONFIG_NAME)
        if os.path.isfile(path):
            break
    else:
        raise ExportError(f"no lvmae export in {folder!r}: neither {os.path.join(folder, FOLDER, CONFIG_NAME)!r} "
                          f"nor {os.path.join(folder, CONFIG_NAME)!r} exists")
    try:
        with open(path, encoding="utf-8") as handle:
            config = json.load(handle)
    except json.JSONDecodeError as error:
        raise ExportError(f"{path}: not JSON ({error})") from error
    if config.get("format") != FORMAT or config.get("version") != VERSION:
        raise ExportError(f"{path}: 'format'/'version' are {config.get('format')!r}/{config.get('version')!r}, "
                          f"expected {FORMAT!r}/{VERSION}")
    for key in ("kind", "files"):
        if key not in config:
            raise ExportError(f"{path}: key {key!r} is missing")
    return config, candidate


def _load(folder: str, name: str) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file
    path = os.path.join(folder, name)
    if not os.path.isfile(path):
        raise ExportError(f"{path} is missing (listed in {CONFIG_NAME} 'files')")
    return load_file(path)


def load_export(folder: str) -> tuple[nn.Module, dict]:
    """The exported module (eval mode) and its config, from ``folder`` (``DIR`` or ``DIR/lvmae``)."""
    config, where = read_config(folder)
    kind = config["kind"]
    if kind == "tokenizer":
        from lvmae.components.models.adaptive_tokenizer import rebuild_adaptive_tokenizer
        if "tokenizer_config" not in config:
            raise ExportError(f"{os.path.join(where, CONFIG_NAME)}: key 'tokenizer_config' is missing")
        state = {f"tokenizer.{k}": v for k, v in _load(where, TOKENIZER_FILE).items()}
        if SCORER_FILE in config["files"]:
            state.update({f"scorer.{k}": v for k, v in _load(where, SCORER_FILE).items()})
        return rebuild_adaptive_tokenizer(config["tokenizer_config"], state).eval(), config
    if kind not in ("mae", "classifier"):
        raise ExportError(f"{os.path.join(where, CONFIG_NAME)}: 'kind' is {kind!r}, expected mae, classifier "
                          "or tokenizer")
    from lvmae.experiments.engine import checkpoint_model
    try:
        checkpoint_model.parse_stored_config(config, os.path.join(where, CONFIG_NAME))
    except checkpoint_model.CheckpointError as error:
        raise ExportError(str(error)) from error
    loop = {"mae": "pretrain_loop", "classifier": "finetune_loop"}[kind]
    model = checkpoint_model.evaluate_binding(checkpoint_model.query_binding(f"{loop}.model"))
    if kind == "classifier" and not isinstance(model, nn.Module):
        model = model(num_classes=config["heads"])
    model.load_state_dict(_load(where, MODEL_FILE))
    return model.eval(), config
