"""A checkpoint → the model it holds, rebuilt from the operative gin config stored inside it.

Every checkpoint carries ``gin_config`` (full selectors: it re-parses as is) and the command
that wrote it (``experiments/engine/checkpoints.py``). The entry point's ``model`` binding is
built again from that config and the checkpoint's weights are loaded into it, so nothing but
the file is needed — no run store, no gin files. A tokenizer is rebuilt from its
``tokenizer_config`` without gin at all.

Kinds: ``mae`` (``pretrain``), ``classifier`` (``finetune``), ``tokenizer``
(``pretrain_tokenizer``).
"""
from __future__ import annotations

import dataclasses
import os

import torch
from torch import nn

KINDS = {"pretrain": "mae", "finetune": "classifier", "pretrain_tokenizer": "tokenizer"}
# Words in the gin bindings that describe a run's data (the model card lists them).
_DATA_WORDS = ("dataset", "manifest", "data_pipeline")
_LOOPS = {"pretrain": "pretrain_loop", "finetune": "finetune_loop", "pretrain_tokenizer": "pretrain_tokenizer_loop"}


class CheckpointError(ValueError):
    """The file is no checkpoint this module can rebuild; the message names the file and key."""


@dataclasses.dataclass
class CheckpointModel:
    path: str
    state: dict             # the checkpoint (weights included)
    kind: str               # mae | classifier | tokenizer
    model: nn.Module        # in eval mode, weights loaded
    preprocessing: dict     # the data pipeline's clip and pixel settings (see ``preprocessing``)
    label_names: dict[str, list[str]] | None = None
    data: dict | None = None     # dataset binding and manifest summary, for the model card

    @property
    def command(self) -> str:
        return self.state["command"]


def evaluate_binding(value):
    """A gin binding's value with references and macros evaluated (``@x()``/``%M``); a factory
    reference (``@x``) comes back as the callable."""
    import gin.config as gin_config
    if isinstance(value, gin_config.ConfigurableReference):
        return value.scoped_configurable_fn() if value.evaluate else value.scoped_configurable_fn
    return value


def query_binding(selector: str):
    import gin
    try:
        return gin.query_parameter(selector)
    except ValueError:
        return None


def parse_stored_config(state: dict, path: str) -> None:
    """Clears gin and applies the checkpoint's operative config."""
    import gin

    from lvmae.experiments.engine import gin_config
    text = state.get("gin_config")
    if not isinstance(text, str) or not text.strip():
        raise CheckpointError(f"checkpoint {path!r} has no 'gin_config' to rebuild its model from")
    gin_config.parse([], [])      # components discovered, commands registered, gin cleared
    from lvmae.components.data.reading.pipeline import MOVED_SELECTORS
    for old, new in MOVED_SELECTORS.items():      # selectors renamed since the checkpoint was written
        text = text.replace(f"{old}.", f"{new}.")
    try:
        gin.parse_config(text)
    except Exception as error:  # gin raises ValueError, SyntaxError, ImportError, ...
        raise CheckpointError(f"checkpoint {path!r}: its 'gin_config' no longer parses: {error}") from error


def preprocessing() -> dict:
    """The gin-bound ``data_pipeline``'s settings that decide what the encoder sees."""
    from lvmae.components.data.reading.pipeline import DataPipeline
    pipeline = DataPipeline(workers=0)
    sampling = {"clip_frames": pipeline.clip_frames, "stride": pipeline.stride, "fps": pipeline.fps,
                "window": "center", "short_policy": pipeline.short_policy,
                "temporal_views": pipeline.temporal_views, "spatial_views": pipeline.spatial_views}
    return {"size": pipeline.size, "resize": pipeline.resize, "mean": list(pipeline.mean),
            "std": list(pipeline.std), "frame_sampling": sampling}


def _dataset_summary(loop: str, with_labels: bool) -> tuple[dict | None, dict | None, str | None]:
    """(data summary, label names per head, why the labels could not be read)."""
    from lvmae.experiments.engine.checkpoints import flat_bindings
    binding = query_binding(f"{loop}.dataset")
    if binding is None:
        return None, None, f"{loop}.dataset is not bound"
    # the bindings that say what the data was: the dataset's, its macros and the pipeline's
    summary = {"gin": {key: value for key, value in flat_bindings().items()
                       if any(word in key.lower() for word in _DATA_WORDS)}}
    if not with_labels:     # preparing a generated dataset may write it: only for label names
        return summary, None, None
    try:
        manifest = evaluate_binding(binding).prepare()
    except Exception as error:  # noqa: BLE001  (the data may be gone; the export goes on and says so)
        return summary, None, f"{loop}.dataset could not be read: {error}"
    summary.update(name=manifest.name, splits={s: v.samples for s, v in manifest.splits.items()},
                   root=manifest.root)
    return summary, {head: list(names) for head, names in manifest.heads.items()}, None


def load_checkpoint_model(path: str) -> tuple[CheckpointModel, list[str]]:
    """Rebuilds the model of ``path``; returns it and notes (what could not be read)."""
    from lvmae.experiments.engine.checkpoints import FORMAT
    from lvmae.experiments.engine.training import load_checkpoint
    if not os.path.isfile(path):
        raise CheckpointError(f"checkpoint not found: {path!r}")
    try:
        state = load_checkpoint(path)
    except Exception as error:  # a foreign or damaged file
        raise CheckpointError(f"{path!r} is not a readable lvmae checkpoint: {error}") from error
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{path!r} is not an lvmae checkpoint (no 'format': {FORMAT!r})")
    command = state.get("command")
    if command not in KINDS:
        raise CheckpointError(f"checkpoint {path!r} was written by {command!r}; export takes checkpoints of "
                              f"{sorted(KINDS)}")
    if not isinstance(state.get("model"), dict):
        raise CheckpointError(f"checkpoint {path!r} has no 'model' weights")
    kind, loop, notes = KINDS[command], _LOOPS[command], []
    parse_stored_config(state, path)
    data, labels, why = _dataset_summary(loop, with_labels=kind == "classifier")
    if why:
        notes.append(why)
    if kind == "tokenizer":
        from lvmae.components.models.adaptive_tokenizer import rebuild_adaptive_tokenizer
        if "tokenizer_config" not in state:
            raise CheckpointError(f"checkpoint {path!r} has no 'tokenizer_config'")
        model = rebuild_adaptive_tokenizer(state["tokenizer_config"], state["model"])
    else:
        binding = query_binding(f"{loop}.model")
        if binding is None:
            raise CheckpointError(f"checkpoint {path!r}: its gin config binds no {loop}.model")
        model = evaluate_binding(binding)
        if kind == "classifier" and not isinstance(model, nn.Module):
            if "heads" not in state:
                raise CheckpointError(f"checkpoint {path!r} has no 'heads' to build its classifier with")
            model = model(num_classes=dict(state["heads"]))
        missing, unexpected = model.load_state_dict(state["model"], strict=False)
        if missing or unexpected:
            raise CheckpointError(f"checkpoint {path!r}: its weights do not fit the model its gin config "
                                  f"builds: missing {missing}, unexpected {unexpected}")
    if kind == "classifier" and labels is None:
        labels = {head: [f"LABEL_{i}" for i in range(count)] for head, count in state.get("heads", {}).items()}
        notes.append("label names unavailable: exported as LABEL_0, LABEL_1, …")
    with torch.no_grad():
        model.eval()
    return CheckpointModel(path, state, kind, model, preprocessing(), labels, data), notes
