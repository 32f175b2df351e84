"""The model card (``README.md``) of an export: what it is, how to load it, how to reproduce its
features, the gin config, the data, the run's metrics and the lvmae version.

The run's metrics come from the store runs are recorded in (``LVMAE_OBSERVER``: ``runs/<id>/``
files or the database), found by the checkpoint's run id; when the store cannot be read the card
says so and the export goes on.
"""
from __future__ import annotations

import json
import os


def run_record(run_id) -> tuple[dict | None, str | None]:
    """({"status", "metrics": {name: (last step, last value)}}, None) or (None, why not)."""
    if run_id is None or not str(run_id).isdigit():
        return None, f"run id {run_id!r} is not a recorded run (an unobserved run)"
    from lvmae.experiments.tracking import local_db
    from lvmae.experiments.tracking.observers import observer_kind
    try:
        if observer_kind() == "file":
            folder = os.path.join(os.environ.get(local_db.RUNS_DIR_ENV, "runs"), str(run_id))
            with open(os.path.join(folder, "run.json"), encoding="utf-8") as handle:
                run = json.load(handle)
            metrics_path = os.path.join(folder, "metrics.json")
            raw = {}
            if os.path.isfile(metrics_path):
                with open(metrics_path, encoding="utf-8") as handle:
                    raw = json.load(handle)
            metrics = {name: (series["steps"][-1], series["values"][-1]) for name, series in raw.items()
                       if series.get("values")}
            return {"status": run.get("status"), "metrics": metrics, "where": folder}, None
        return _mongo_record(int(run_id))
    except Exception as error:  # noqa: BLE001  (the card says why; the export goes on)
        return None, f"run {run_id} could not be read from the run store: {error}"


def _mongo_record(run_id: int) -> tuple[dict | None, str | None]:
    import pymongo

    from lvmae.experiments.tracking.observers import DEFAULT_DB, MONGO_DB_ENV, mongo_url
    url, _ = mongo_url()
    with pymongo.MongoClient(url, serverSelectionTimeoutMS=3000) as client:
        db = client[os.environ.get(MONGO_DB_ENV, DEFAULT_DB)]
        run = db.runs.find_one({"_id": run_id}, {"status": 1})
        if run is None:
            return None, f"no run {run_id} in the database"
        metrics = {doc["name"]: (doc["steps"][-1], doc["values"][-1])
                   for doc in db.metrics.find({"run_id": run_id}) if doc.get("values")}
    return {"status": run.get("status"), "metrics": metrics, "where": "database"}, None


def _json(value) -> str:
    return json.dumps(value, indent=2)


def _loading(kind: str, written: list[str], heads: list[str]) -> list[str]:
    lines = ["## Loading", ""]
    if kind == "tokenizer":
        return lines + ["```python", "from lvmae.experiments.engine.native_export import load_export",
                        "tokenizer, config = load_export('DIR')   # AdaptiveTokenizer: .tokenizer, .scorer",
                        "latents, indices = tokenizer.tokenizer.encode_windows(video)  # video (b, C, T, H, W)",
                        "```", ""]
    if written:
        if kind == "mae":     # features from the encoder (VideoMAEForPreTraining wants a mask)
            model_class, output = "VideoMAEModel", "features = model(pixel_values).last_hidden_state  # (1, n, d)"
            folder = "DIR/encoder" if any("DIR/encoder" in line for line in written) else "DIR"
        else:
            model_class = "VideoMAEForVideoClassification"
            output = "label = model.config.id2label[model(pixel_values).logits.argmax(-1).item()]"
            folder = "DIR" if len(heads) == 1 else f"DIR/{heads[0]}"
        lines += ["```python", "import torch",
                  f"from transformers import VideoMAEImageProcessor, {model_class}",
                  f"processor = VideoMAEImageProcessor.from_pretrained('{folder}')",
                  f"model = {model_class}.from_pretrained('{folder}').eval()",
                  "# frames: uint8 (T, H, W, 3), chosen as processor.lvmae_frame_sampling says (below)",
                  "pixel_values = processor(list(frames), return_tensors='pt')['pixel_values']",
                  "with torch.no_grad():", f"    {output}", "```", ""]
    lines += [("In lvmae: `pretrain_loop.init_from='DIR/model.safetensors'` (a pre-trained MAE in transformers' "
               "format), `finetune_loop.pretrained='DIR'` (any export of an encoder), or "
               "`load_export('DIR')` (`lvmae.experiments.engine.native_export`) for the lvmae module."), ""]
    return lines


def write_card(folder: str, source, written: list[str], refused: list[str], notes: list[str]) -> str:
    """Writes ``folder/README.md``; ``written``/``refused``: one line per transformers export."""
    from lvmae.experiments.engine.native_export import lvmae_version
    state = source.state
    heads = list(source.label_names or {})
    tags = ["video", "masked-autoencoder", "lvmae"] + (["videomae"] if written else [])
    front = ["---", "library_name: " + ("transformers" if written else "lvmae"),
             "tags:", *[f"- {tag}" for tag in tags]]
    if source.kind == "classifier":
        front.append("pipeline_tag: video-classification")
    front.append("---")
    title = {"mae": "Pre-trained video MAE", "classifier": "Fine-tuned video classifier",
             "tokenizer": "Video tokenizer and token scorer"}[source.kind]
    lines = front + ["", f"# {title} (lvmae)", "",
                     (f"Exported by `lvmae export` from `{source.path}` (command `{state['command']}`, run "
                      f"{state.get('run_id')}, seed {state.get('seed')}, step {state.get('step')}) with lvmae "
                      f"{lvmae_version()}."), "", "## Contents", ""]
    lines += [f"- transformers: {line}" for line in written]
    lines += [f"- refused for transformers: {line}" for line in refused]
    lines += ["- lvmae: `lvmae/` (safetensors + `lvmae_config.json`, read back by `load_export`)"]
    lines += [f"- note: {note}" for note in notes]
    lines += [""] + _loading(source.kind, written, heads)
    sampling = source.preprocessing["frame_sampling"]
    lines += ["## Preprocessing (what the encoder saw)", "",
              f"Frames: {sampling['clip_frames']} frames, "
              + (f"one every round(video fps / {sampling['fps']:g}) stored frames" if sampling["fps"]
                 else f"one every {sampling['stride']} stored frames")
              + f", the window centred in the clip (start = (frames − span) // 2, span = (clip_frames − 1)·stride "
              f"+ 1; shorter clips: `{sampling['short_policy']}`). Pixels: short side resized to "
              f"{source.preprocessing['resize']} (bilinear, antialiased), centred {source.preprocessing['size']}² "
              f"crop, x/255, (x − mean)/std with mean {source.preprocessing['mean']} and std "
              f"{source.preprocessing['std']}. Input layout: lvmae (b, C, T, H, W); transformers (b, T, C, H, W).", ""]
    if source.label_names:
        lines += ["## Labels", ""]
        lines += [f"- `{head}`: {len(names)} classes: {', '.join(names)}" for head, names in source.label_names.items()]
        lines += [""]
    lines += ["## Data", "", "```json", _json(source.data or {"binding": "not recorded"}), "```", ""]
    record, why = run_record(state.get("run_id"))
    lines += ["## Metrics", ""]
    if record is None:
        lines += [f"Not available: {why}.", ""]
    else:
        lines += [f"Run status {record['status']} ({record['where']}); last value of each metric:", "",
                  "| metric | step | value |", "|---|---|---|"]
        lines += [f"| {name} | {step} | {value:.6g} |" if isinstance(value, (int, float)) else
                  f"| {name} | {step} | {value} |" for name, (step, value) in sorted(record["metrics"].items())]
        lines += [""]
    lines += ["## gin config", "", "```", state.get("gin_config", "").rstrip(), "```", ""]
    path = os.path.join(folder, "README.md")
    with open(path, "w", encoding="utf-8") as handle:
        handle.write("\n".join(lines))
    return path
