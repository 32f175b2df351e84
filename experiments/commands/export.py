"""``lvmae export RUN_OR_CHECKPOINT --to DIR`` (``python run.py export``): a run's weights in the
formats the field loads, with a model card.

RUN_OR_CHECKPOINT is a checkpoint file, a run folder holding ``last.pt``, or a recorded run id
(its ``info.checkpoint``). What DIR receives, by the command that wrote the checkpoint:

- ``pretrain`` (a video MAE): DIR is a ``transformers`` ``VideoMAEForPreTraining`` folder
  (``config.json``, ``model.safetensors``, ``preprocessor_config.json``) and DIR/encoder/ a
  ``VideoMAEModel`` folder of the encoder alone; a decoder transformers cannot hold (a
  latent-target decoder, other positions or epsilons) leaves DIR the ``VideoMAEModel`` folder;
- ``finetune`` (a classifier): DIR is a ``VideoMAEForVideoClassification`` folder with the label
  names, one per label head as DIR/<head>/ when the run has several;
- ``pretrain_tokenizer``: the tokenizer and the scorer (lvmae's own format only);

and always ``DIR/lvmae/`` (safetensors + ``lvmae_config.json``, read back by
``native_export.load_export`` without the run store) and ``DIR/README.md`` (the model card: gin
config, data, the run's metrics, the lvmae version). Whatever transformers cannot represent is
refused by name; lvmae's own export is still written, and the exit status is 2 when nothing
could be written for transformers. See docs/export.md.
"""
from __future__ import annotations

import argparse
import json
import os

from lvmae.experiments import program

CONFIG_NAME, WEIGHTS_NAME, PROCESSOR_NAME = "config.json", "model.safetensors", "preprocessor_config.json"
ENCODER_FOLDER = "encoder"


def resolve_source(spec: str) -> str:
    """The checkpoint file of a path, run folder or recorded run id; raises FileNotFoundError."""
    from lvmae.experiments.engine.run_folder import CHECKPOINT_NAME
    if os.path.isfile(spec):
        return spec
    if os.path.isdir(spec):
        path = os.path.join(spec, CHECKPOINT_NAME)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"{spec!r} is a folder without {CHECKPOINT_NAME}")
        return path
    if spec.isdigit():
        from lvmae.experiments.reporting.model_card import run_record
        checkpoint = _recorded_checkpoint(int(spec))
        if checkpoint is None:
            _, why = run_record(spec)
            raise FileNotFoundError(f"run {spec}: {why or 'its record names no checkpoint (info.checkpoint)'}")
        if not os.path.isfile(checkpoint):
            raise FileNotFoundError(f"run {spec}: its checkpoint {checkpoint!r} no longer exists")
        return checkpoint
    raise FileNotFoundError(f"{spec!r} is neither a checkpoint file, a run folder nor a run id")


def _recorded_checkpoint(run_id: int) -> str | None:
    from lvmae.experiments.tracking import local_db
    from lvmae.experiments.tracking.observers import DEFAULT_DB, MONGO_DB_ENV, mongo_url, observer_kind
    try:
        if observer_kind() == "file":
            folder = os.path.join(os.environ.get(local_db.RUNS_DIR_ENV, "runs"), str(run_id))
            with open(os.path.join(folder, "info.json"), encoding="utf-8") as handle:
                return json.load(handle).get("checkpoint")
        import pymongo
        url, _ = mongo_url()
        with pymongo.MongoClient(url, serverSelectionTimeoutMS=3000) as client:
            run = client[os.environ.get(MONGO_DB_ENV, DEFAULT_DB)].runs.find_one({"_id": run_id}, {"info": 1})
        return (run or {}).get("info", {}).get("checkpoint")
    except Exception:  # noqa: BLE001  (resolve_source says the run could not be found)
        return None


def _write_hf(folder: str, config: dict, architecture: str, state: dict, preprocessing: dict) -> None:
    from safetensors.torch import save_file

    from lvmae.components.models.hf_export import processor_config
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, CONFIG_NAME), "w", encoding="utf-8") as handle:
        json.dump({**config, "architectures": [architecture], "dtype": "float32"}, handle, indent=2)
    save_file(state, os.path.join(folder, WEIGHTS_NAME), metadata={"format": "pt"})
    with open(os.path.join(folder, PROCESSOR_NAME), "w", encoding="utf-8") as handle:
        json.dump(processor_config(preprocessing), handle, indent=2)


def export_mae(folder: str, source) -> tuple[list[str], list[str]]:
    from lvmae.components.models import hf_export
    mae = source.model
    try:
        config = hf_export.encoder_config(mae.encoder)
    except hf_export.NotRepresentable as error:
        return [], [f"{hf_export.ENCODER} and {hf_export.PRETRAINING}: {error}"]
    try:
        full = {**config, **hf_export.decoder_config(mae.decoder, mae.encoder, mae.target, config)}
    except hf_export.NotRepresentable as error:
        _write_hf(folder, config, hf_export.ENCODER, hf_export.encoder_state(mae.encoder), source.preprocessing)
        return [f"{hf_export.ENCODER}: DIR"], [f"{hf_export.PRETRAINING}: {error}"]
    _write_hf(folder, full, hf_export.PRETRAINING, hf_export.pretraining_state(mae), source.preprocessing)
    _write_hf(os.path.join(folder, ENCODER_FOLDER), config, hf_export.ENCODER, hf_export.encoder_state(mae.encoder),
              source.preprocessing)
    return [f"{hf_export.PRETRAINING}: DIR", f"{hf_export.ENCODER}: DIR/{ENCODER_FOLDER} (encoder only)"], []


def export_classifier(folder: str, source) -> tuple[list[str], list[str]]:
    from lvmae.components.models import hf_export
    classifier, written, refused = source.model, [], []
    try:
        config = hf_export.encoder_config(classifier.encoder)
    except hf_export.NotRepresentable as error:
        return [], [f"{hf_export.CLASSIFICATION}: {error}"]
    heads = list(classifier.heads)
    for head in heads:
        try:
            head_config = hf_export.classifier_config(classifier, head, config)
        except hf_export.NotRepresentable as error:
            refused.append(f"{hf_export.CLASSIFICATION} head {head!r}: {error}")
            continue
        names = source.label_names[head]
        labels = {"id2label": {str(i): name for i, name in enumerate(names)},
                  "label2id": {name: i for i, name in enumerate(names)}}
        where = folder if len(heads) == 1 else os.path.join(folder, head)
        _write_hf(where, {**config, **head_config, **labels}, hf_export.CLASSIFICATION,
                  hf_export.classification_state(classifier, head), source.preprocessing)
        written.append(f"{hf_export.CLASSIFICATION} head {head!r} ({len(names)} labels): "
                       + ("DIR" if len(heads) == 1 else f"DIR/{head}"))
    return written, refused


def export(spec: str, folder: str, overwrite: bool = False) -> dict:
    """Writes the export of ``spec`` into ``folder``; returns {"written", "refused", "notes", "card"}."""
    import importlib.util

    from lvmae.experiments.engine.checkpoint_model import load_checkpoint_model
    from lvmae.experiments.engine.native_export import write_native
    from lvmae.experiments.reporting.model_card import write_card
    if importlib.util.find_spec("safetensors") is None:
        raise ImportError("the safetensors package is not installed: pip install 'lvmae[export]' (or safetensors)")
    path = resolve_source(spec)
    if os.path.isdir(folder) and os.listdir(folder):
        previous = os.path.join(folder, "lvmae", "lvmae_config.json")
        if not overwrite or not os.path.isfile(previous):
            raise FileExistsError(f"--to {folder!r} is not empty" + (
                " and holds no earlier export (no lvmae/lvmae_config.json): choose another folder" if overwrite
                else " (--overwrite replaces an earlier export there)"))
        import shutil
        shutil.rmtree(folder)
    source, notes = load_checkpoint_model(path)
    os.makedirs(folder, exist_ok=True)
    write_native(folder, source)
    if source.kind == "mae":
        written, refused = export_mae(folder, source)
    elif source.kind == "classifier":
        written, refused = export_classifier(folder, source)
    else:
        written, refused = [], []
        notes.append("a tokenizer and scorer have no transformers counterpart: lvmae's format only")
    card = write_card(folder, source, written, refused, notes)
    return {"kind": source.kind, "checkpoint": path, "written": written, "refused": refused, "notes": notes,
            "card": card}


def main(argv: list[str]) -> int:
    prog = f"{program.name()} export"
    parser = argparse.ArgumentParser(prog=prog, description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source", metavar="RUN_OR_CHECKPOINT",
                        help="a checkpoint file, a run folder holding last.pt, or a recorded run id")
    parser.add_argument("--to", required=True, metavar="DIR", help="the folder to write")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace an earlier export in DIR (a folder holding anything else is refused)")
    args = parser.parse_args(argv)
    from lvmae.experiments.engine.checkpoint_model import CheckpointError
    try:
        result = export(args.source, args.to, args.overwrite)
    except (FileNotFoundError, FileExistsError, ImportError, CheckpointError) as error:
        program.refuse(f"{prog}: {error}. Nothing was exported.")
    print(f"exported {result['kind']} from {result['checkpoint']} to {args.to}")
    for line in result["written"]:
        print(f"  transformers {line}")
    for line in result["refused"]:
        print(f"  refused {line}")
    for line in result["notes"]:
        print(f"  note: {line}")
    print(f"  lvmae: {os.path.join(args.to, 'lvmae')}; model card: {result['card']}")
    if result["kind"] != "tokenizer" and not result["written"]:
        print(f"{prog}: transformers cannot represent this model (see 'refused' above); lvmae's own "
              "export was written.", flush=True)
        return program.REFUSED_STATUS
    return 0
