"""Battery calibration: does a pixel-MAE encoder pre-trained at CPU size beat a random one?

For every seed, one pixel MAE per encoder gin file pre-trains for ``max(--steps)`` steps
(AdamW lr 1e-3, wd 0.05, betas 0.9/0.95, 10 warm-up steps then cosine, batch 16, clip 1.0) —
gin/battery/battery_cpu.gin (ViT-tiny, 16 frames at 32², tube keep 0.5, random decoder 15%,
norm-pix targets) on the procedural world (``dataset.battery_world``) for the four short
tasks, gin/battery/long_range.gin (a 2-block 64-wide ViT at 128 frames, tube keep 0.25) on
the long-range task's own unlabelled clips. Its encoder is kept at each of ``--steps`` (step 0
is the randomly initialised encoder of that seed: the random-init control). Each kept encoder
is then, per task (gin/battery/<task>.gin):

- **probed frozen**: features of the chosen blocks (``--layers``) of every labelled and
  validation clip, standardised per dimension on the labelled clips; a grid of heads
  (attentive and linear × ``--probe-lrs``; linear at 10× the rate) trains on ``--labelled``
  clips minus a held-out quarter; the head best on the held-out quarter is reported on the
  validation split (2,000 clips);
- optionally **fine-tuned** (``--finetune-steps`` > 0; at step 0 and the last step only):
  encoder + attentive head on the same labelled clips, lr 5e-4 (step 0: the no-pre-training
  "scratch" control);
- optionally the **ceiling** (``--ceiling-steps`` > 0, step 0 only): a supervised fine-tune
  from scratch on every generated training clip (``--labelled-pool``).

One JSON line per (seed, steps, task, mode) goes to ``--out`` (kept: rerunning skips what is
there, so a run can be continued or split over processes by seed); ``--report`` writes the
table — per task the pre-trained encoder beside its controls, paired t-tests over seeds with
95% intervals — to ``--markdown`` and the probe top-1 vs pre-training steps curve to ``--plot``.

    python benchmarks/battery_calibration.py --seeds 1 3 5 --steps 0 500 --probe-lrs 1e-3 1e-2 &
    python benchmarks/battery_calibration.py --seeds 2 4 --steps 0 100 500 --probe-lrs 1e-3 1e-2
    python benchmarks/battery_calibration.py --seeds 1 2 --steps 0 500 --probe-lrs 1e-3 1e-2 --finetune-steps 150
    python benchmarks/battery_calibration.py --seeds 2 --steps 0 500 --probe-lrs 1e-3 1e-2 --tasks playback_speed \\
        --ceiling-steps 300
    python benchmarks/battery_calibration.py --report --probe-lrs 1e-3 1e-2

Round 2 (docs/results/battery_calibration_own.md): the short tasks with the small encoder
pre-trained on each task's own unlabelled clips; ``-t`` binds a task's dataset (each task takes
the bindings that name its dataset, and its rows are keyed by them):

    TO='-t dataset.temporal_order.flash_frames=4 -t dataset.temporal_order.gap=6 -t dataset.temporal_order.distractors=0'
    python benchmarks/battery_calibration.py --world own --encoder-gin gin/battery/battery_small.gin \
        --tasks temporal_order texture_orientation pan_direction --steps 0 500 --probe-lrs 1e-3 1e-2 $TO
    python benchmarks/battery_calibration.py --world own --encoder-gin gin/battery/battery_small.gin \
        --tasks texture_orientation --steps 0 500 2000 --probe-lrs 1e-3 1e-2 --seeds 6 7 8 9 10 11 12 13 14 15 16
    python benchmarks/battery_calibration.py --report --world own --encoder-gin gin/battery/battery_small.gin \
        --probe-lrs 1e-3 1e-2 $TO --seed-sets 1-5 6-15 7-11 12-16 \
        --markdown docs/results/battery_calibration_own.md --plot docs/results/battery_calibration_own.png

(texture orientation's seeds 6–15, 7–11 and 12–16 are confirmations, each declared after seeing
the seeds before it — docs/data.md, "Battery calibration: results": the report tests each set
of seeds on its own.)

Clips come straight from the datasets' generators (no shards), normalised like the data
pipeline (ImageNet mean/std); pre-training applies a random horizontal flip (the world's
labels are unused), no crop. Each process uses ``OMP_NUM_THREADS`` threads; progress bars
show generation, pre-training and each result as it is written.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import time
from pathlib import Path

import gin
import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from lvmae import registry
from lvmae.components.data.reading.augment import normalise
from lvmae.experiments.engine import gin_config
from lvmae.registry import discover

ROOT = Path(__file__).resolve().parents[1]
# task → (the MAE's gin file, the dataset's registered name, the task's gin file)
SUITES = {task: ("gin/battery/battery_cpu.gin", task, f"gin/battery/{task}.gin")
          for task in ("shape_class", "texture_orientation", "motion_direction", "pan_direction", "temporal_order",
                               "playback_speed")}
# The long-range task needs a 128-frame encoder of its own, pre-trained on its unlabelled clips.
SUITES["long_range"] = ("gin/battery/long_range.gin", "cue_probe", "gin/battery/long_range.gin")
TASKS = tuple(SUITES)
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
DEFAULT_WORLD = "battery_world"


def gin_dataset(gin_file: str, bindings: list[str]):
    """The dataset ``%DATASET`` of a gin file (+ ``bindings``)."""
    gin_config.parse([gin_file], bindings)
    dataset = gin.query_parameter("%DATASET").scoped_configurable_fn()
    gin.clear_config()
    return dataset


def own_bindings(task: str, bindings: list[str]) -> list[str]:
    """The gin bindings among ``bindings`` that name ``task``'s dataset, written ``key = value``."""
    canonical = [" = ".join(part.strip() for part in b.split("=", 1)) for b in bindings]
    return [b for b in canonical if b.startswith(f"dataset.{SUITES[task][1]}.")]


def task_dataset(task: str, data_root: str, labelled: int, bindings: list[str] = ()):
    """The task's dataset as its gin file configures it (the data root and the number of
    training clips generated overridden), plus the ``bindings`` that name its dataset."""
    name = SUITES[task][1]
    return gin_dataset(SUITES[task][2], [f"dataset.{name}.root = '{data_root}'",
                                         f"dataset.{name}.train_samples = {labelled}",
                                         *own_bindings(task, bindings)])


def clips_tensor(dataset, split: str, cache: str, desc: str) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 (N, c, t, h, w) clips and (N,) labels of a split, cached under ``cache``."""
    key = json.dumps(getattr(dataset, "params", {}), sort_keys=True, default=str)
    path = os.path.join(cache, f"{type(dataset).__name__}_{split}_{hashlib.sha1(key.encode()).hexdigest()[:12]}.pt")
    if os.path.exists(path):
        return torch.load(path)
    xs, ys = [], []
    for clip, label, _ in tqdm(dataset.clips(split), desc=desc, unit="clip", mininterval=2):
        xs.append(torch.from_numpy(np.ascontiguousarray(clip)).permute(3, 0, 1, 2))
        ys.append(int(label))
    out = torch.stack(xs), torch.tensor(ys)
    os.makedirs(cache, exist_ok=True)
    torch.save(out, path + f".{os.getpid()}")
    os.replace(path + f".{os.getpid()}", path)     # atomic: a parallel run never reads half a file
    return out


def build_mae(gin_file: str, bindings: list[str]):
    """The pixel MAE of ``gin_file`` (+ ``bindings``), freshly initialised, and its pre-training
    data (``%DATASET``)."""
    gin_config.parse([gin_file], bindings)
    model = registry.get("model.mae").obj()
    world = gin.query_parameter("%DATASET").scoped_configurable_fn()
    gin.clear_config()
    return model, world


def cosine(step: int, steps: int, warmup: int) -> float:
    return min(1.0, (step + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * min(step, steps) / steps))


def pretrain(args, gin_file: str, seed: int, keep_at: list[int], own: tuple[str, torch.Tensor] | None = None
             ) -> dict[int, str]:
    """Pre-trains one pixel MAE (or finds it done); → {steps: encoder state path} for every
    step in ``keep_at``. ``own`` = (task, its unlabelled training clips) pre-trains on the
    task's own clips instead of the gin file's ``%DATASET``."""
    recipe = json.dumps([gin_file, args.bind, args.pretrain_lr, args.batch_size, max(keep_at)]
                        + ([own[0], len(own[1])] if own else []))
    name = f"{Path(gin_file).stem}_{hashlib.sha1(recipe.encode()).hexdigest()[:10]}_seed{seed}"
    paths = {s: os.path.join(args.work, f"{name}_enc_{s}.pt") for s in keep_at}
    if all(os.path.exists(p) for p in paths.values()):
        return paths
    torch.manual_seed(seed)
    model, world = build_mae(gin_file, args.bind)
    video = own[1] if own else clips_tensor(world, "train", args.cache, "world clips")[0]
    decay = [p for p in model.parameters() if p.ndim > 1]
    other = [p for p in model.parameters() if p.ndim <= 1]
    optimiser = torch.optim.AdamW([{"params": decay, "weight_decay": 0.05}, {"params": other, "weight_decay": 0.0}],
                                  lr=args.pretrain_lr, betas=(0.9, 0.95))
    total = max(keep_at)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimiser, lambda s: cosine(s, total, 10))
    rows, masks = torch.Generator().manual_seed(seed), torch.Generator().manual_seed(seed + 10_000)
    model.train()
    progress = tqdm(range(total + 1), desc=f"pretrain seed {seed}", mininterval=5)
    for step in progress:
        if step in paths:
            torch.save(model.encoder.state_dict(), paths[step])
        if step == total:
            break
        batch = video[torch.randint(len(video), (args.batch_size,), generator=rows)]
        flip = torch.rand(len(batch), generator=rows) < 0.5
        batch = torch.where(flip[:, None, None, None, None], batch.flip(-1), batch)
        losses, _, _ = model({"video": normalise(batch, MEAN, STD)}, masks)
        optimiser.zero_grad()
        losses["loss"].backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimiser.step()
        schedule.step()
        if step % 50 == 0:
            progress.set_postfix(loss=f"{losses['loss'].item():.3f}")
    return paths


@torch.no_grad()
def extract(encoder, video: torch.Tensor, layers: tuple[int, ...], batch: int = 64) -> torch.Tensor:
    """(N, n, d · len(layers)) float16 features of the chosen blocks."""
    encoder.eval()
    parts = [torch.cat(encoder.forward_layers(normalise(video[i:i + batch], MEAN, STD), layers), -1).half()
             for i in range(0, len(video), batch)]
    return torch.cat(parts)


def train_head(kind: str, x: torch.Tensor, y: torch.Tensor, classes: int, lr: float, steps: int,
               seed: int, batch: int, weight_decay: float = 0.05):
    torch.manual_seed(seed)
    dim = x.shape[-1]
    if kind == "attentive":
        head = registry.get("head.class_attention").obj(dim=dim, num_classes=classes, heads=3 if dim % 64 else 0)
    else:
        head = registry.get("head.mean_linear").obj(dim=dim, num_classes=classes)
    optimiser = torch.optim.AdamW(head.parameters(), lr=lr, weight_decay=weight_decay)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimiser, lambda s: cosine(s, steps, 20))
    rows = torch.Generator().manual_seed(seed)
    head.train()
    for _ in range(steps):
        index = torch.randint(len(x), (min(batch, len(x)),), generator=rows)
        loss = F.cross_entropy(head(x[index].float()), y[index])
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        schedule.step()
    return head.eval()


@torch.no_grad()
def accuracy(model, x: torch.Tensor, y: torch.Tensor, batch: int = 256) -> float:
    predictions = torch.cat([model(x[i:i + batch].float()).argmax(-1) for i in range(0, len(x), batch)])
    return float((predictions == y).float().mean())


def probe(args, encoder, train: tuple, val: tuple, classes: int, seed: int) -> dict:
    """The probe grid on frozen features: each head's held-out and validation top-1, and the
    selected head (best held-out) as ``top1``."""
    layers = tuple(args.layers)
    train_x, val_x = extract(encoder, train[0], layers), extract(encoder, val[0], layers)
    mean = train_x.float().mean((0, 1), keepdim=True)
    std = train_x.float().std((0, 1), keepdim=True) + 1e-5
    train_x, val_x = ((train_x.float() - mean) / std).half(), ((val_x.float() - mean) / std).half()
    held = max(1, len(train_x) // 4)
    heads = []
    for kind in args.kinds:
        for lr in args.probe_lrs:
            lr = lr * 10 if kind == "linear" else lr
            head = train_head(kind, train_x[held:], train[1][held:], classes, lr, args.probe_steps, seed,
                              args.probe_batch)
            heads.append({"kind": kind, "lr": lr, "held_out": accuracy(head, train_x[:held], train[1][:held]),
                          "val": accuracy(head, val_x, val[1])})
    best = max(heads, key=lambda h: h["held_out"])
    return {"top1": best["val"], "selected": {k: best[k] for k in ("kind", "lr")}, "heads": heads}


class Finetuned(torch.nn.Module):
    def __init__(self, encoder, classes: int):
        super().__init__()
        self.encoder = encoder
        self.head = registry.get("head.class_attention").obj(dim=encoder.dim, num_classes=classes)

    def forward(self, video):
        return self.head(self.encoder(normalise(video, MEAN, STD)))


def finetune(encoder, train: tuple, val: tuple, classes: int, steps: int, lr: float, seed: int) -> dict:
    """Encoder + attentive head trained end to end on the labelled clips; validation top-1."""
    torch.manual_seed(seed)
    model = Finetuned(encoder, classes)
    optimiser = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.05)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimiser, lambda s: cosine(s, steps, 10))
    rows = torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(steps):
        index = torch.randint(len(train[0]), (16,), generator=rows)
        loss = F.cross_entropy(model(train[0][index]), train[1][index])
        optimiser.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimiser.step()
        schedule.step()
    model.eval()
    return {"top1": accuracy(model, val[0], val[1], batch=64)}


def done_keys(path: str) -> set:
    if not os.path.exists(path):
        return set()
    with open(path, encoding="utf-8") as handle:
        return {row["key"] for row in map(json.loads, handle) if "key" in row}


def mae_gin(args, task: str) -> str:
    """The MAE's gin file for ``task``: ``--encoder-gin`` replaces the short tasks' encoder."""
    return args.encoder_gin if args.encoder_gin and task != "long_range" else SUITES[task][0]


def pretraining_groups(args, data: dict) -> list[tuple[str, list[str], tuple | None]]:
    """(MAE gin file, the tasks its encoders are evaluated on, own clips or None) per
    pre-training: one per gin file on the procedural world, or one per task on its own
    unlabelled training clips (``--world own``; the long-range task always uses its own)."""
    if args.world == "own":
        return [(mae_gin(args, task), [task], None if task == "long_range" else (task, data[task][0][0]))
                for task in args.tasks]
    files = dict.fromkeys(mae_gin(args, task) for task in args.tasks)
    return [(f, [task for task in args.tasks if mae_gin(args, task) == f], None) for f in files]


def run(args) -> None:
    os.makedirs(args.work, exist_ok=True)
    done = done_keys(args.out)
    config = {"layers": list(args.layers), "labelled": args.labelled, "probe_steps": args.probe_steps,
              "probe_batch": args.probe_batch,
              "kinds": list(args.kinds), "probe_lrs": list(args.probe_lrs), "bind": list(args.bind),
              "pretrain_lr": args.pretrain_lr, "batch_size": args.batch_size}
    # Only non-default choices enter the key, so the rows of earlier runs keep theirs.
    config.update({"world": args.world} if args.world != DEFAULT_WORLD else {})
    config.update({"encoder": args.encoder_gin} if args.encoder_gin else {})

    def task_config(task: str) -> dict:
        """The run's configuration as one task sees it: only the task bindings naming its
        dataset; the long-range task has its own encoder and pre-training clips whatever
        ``--world`` and ``--encoder-gin`` say."""
        own = own_bindings(task, args.task_bind)
        mine = {k: v for k, v in config.items() if task != "long_range" or k not in ("world", "encoder")}
        return mine | ({"task_bind": own} if own else {})

    tags = {task: json.dumps(task_config(task), sort_keys=True) for task in args.tasks}
    data = {}
    for task in args.tasks:
        dataset = task_dataset(task, args.data_root, args.labelled_pool, args.task_bind)
        data[task] = (clips_tensor(dataset, "train", args.cache, f"{task} train"),
                      clips_tensor(dataset, "val", args.cache, f"{task} val"), dataset.num_classes)
    steps_kept = sorted(set(args.steps))
    for seed in args.seeds:
        for gin_file, tasks, own in pretraining_groups(args, data):
            # Step 0 (random init) and the last step first: the comparison the calibration is
            # for; the steps between (the curve) after.
            order = [steps_kept[0], *steps_kept[:0:-1]] if len(steps_kept) > 1 else steps_kept
            wanted = [(steps, task, mode) for steps in order for task in tasks
                      for mode in ["probe"] + (["finetune"] if args.finetune_steps and steps in (0, steps_kept[-1]) else [])
                      + (["ceiling"] if args.ceiling_steps and steps == 0 else [])
                      if f"{tags[task]}|{seed}|{steps}|{task}|{mode}" not in done]
            if not wanted:
                continue
            paths = pretrain(args, gin_file, seed, steps_kept, own)
            for steps, task, mode in wanted:
                model, _ = build_mae(gin_file, args.bind)
                encoder = model.encoder
                encoder.load_state_dict(torch.load(paths[steps]))
                (train_x, train_y), val, classes = data[task]
                train = train_x[:args.labelled], train_y[:args.labelled]
                start = time.time()
                if mode == "probe":
                    result = probe(args, encoder, train, val, classes, seed)
                elif mode == "finetune":
                    result = finetune(encoder, train, val, classes, args.finetune_steps, args.finetune_lr, seed)
                else:
                    result = finetune(encoder, (train_x, train_y), val, classes, args.ceiling_steps,
                                      args.finetune_lr, seed)
                row = {"key": f"{tags[task]}|{seed}|{steps}|{task}|{mode}", "config": task_config(task), "seed": seed,
                       "pretrain_steps": steps, "task": task, "mode": mode, "labelled": len(train[1]) if mode != "ceiling"
                       else len(train_y), "val_clips": len(val[1]), **result, "seconds": round(time.time() - start, 1)}
                if mode != "probe":
                    row["train_steps"] = args.finetune_steps if mode == "finetune" else args.ceiling_steps
                with open(args.out, "a", encoding="utf-8") as handle:
                    handle.write(json.dumps(row) + "\n")
                print(f"seed {seed} steps {steps} {task} {mode}: top-1 {result['top1']:.3f}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3, 4, 5])
    parser.add_argument("--steps", type=int, nargs="+", default=[0, 300, 1000],
                        help="pre-training steps at which the encoder is evaluated (0: random init)")
    parser.add_argument("--tasks", nargs="+", default=list(TASKS), choices=TASKS)
    parser.add_argument("--layers", type=int, nargs="+", default=[-1], help="encoder blocks the probe reads")
    parser.add_argument("--labelled", type=int, default=256, help="labelled training clips per task")
    parser.add_argument("--labelled-pool", type=int, default=1024, help="training clips generated per task")
    parser.add_argument("--kinds", nargs="+", default=["attentive", "linear"])
    parser.add_argument("--probe-lrs", type=float, nargs="+", default=[3e-4, 1e-3, 3e-3])
    parser.add_argument("--probe-steps", type=int, default=300)
    parser.add_argument("--probe-batch", type=int, default=32)
    parser.add_argument("--finetune-steps", type=int, default=0)
    parser.add_argument("--finetune-lr", type=float, default=5e-4)
    parser.add_argument("--ceiling-steps", type=int, default=0)
    parser.add_argument("--pretrain-lr", type=float, default=1e-3)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--world", choices=(DEFAULT_WORLD, "own"), default=DEFAULT_WORLD,
                        help="pre-training clips: the procedural world, or each task's own unlabelled clips")
    parser.add_argument("--encoder-gin", default="", help="MAE gin file for the short tasks (default: "
                        "gin/battery/battery_cpu.gin)")
    parser.add_argument("-t", "--task-bind", action="append", default=[],
                        help="gin binding of a task's dataset (e.g. dataset.motion_direction.distractors = 0); "
                             "each task takes those that name its dataset")
    parser.add_argument("-b", "--bind", action="append", default=[], help="gin binding for the MAE")
    parser.add_argument("--work", default="/tmp/battery/calibration", help="encoder checkpoints")
    parser.add_argument("--cache", default="/tmp/battery/clips", help="generated clips")
    parser.add_argument("--data-root", default="/tmp/battery/data")
    parser.add_argument("--out", default=str(ROOT / "docs" / "results" / "battery_calibration.jsonl"))
    parser.add_argument("--report", action="store_true", help="print the table (and --plot) instead of running")
    parser.add_argument("--plot", default=str(ROOT / "docs" / "results" / "battery_calibration.png"))
    parser.add_argument("--markdown", default=str(ROOT / "docs" / "results" / "battery_calibration.md"))
    parser.add_argument("--seed-sets", nargs="+", default=[], metavar="FIRST-LAST",
                        help="--report: test each range of seeds on its own (e.g. 1-5 6-15: seeds run after "
                             "seeing the first set are a confirmation, not more of the same sample)")
    args = parser.parse_args()
    discover()
    if args.report:
        from battery_calibration_report import report  # the table and curve of --report
        report(args)
    else:
        run(args)


if __name__ == "__main__":
    main()
