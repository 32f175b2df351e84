"""Frozen evaluation: the feature cache, intermediate layers, segments × views, the probe grid's
training, selection and reporting, kNN — and one ``run.py probe`` that trains ≥ 8 probes from
one extraction and reuses it on a second run."""
from __future__ import annotations

import csv
import json

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from lvmae.components.backbones.heads import ClassAttentionPool
from lvmae.components.backbones.vit import VideoViT
from lvmae.experiments.commands.probe import held_out, plan_splits
from lvmae.experiments.engine.feature_cache import FeatureCache, FeatureSet, encoder_fingerprint, extract
from lvmae.experiments.engine.knn import knn_top1
from lvmae.experiments.engine.probe_grid import GridProbes, ProbeGrid, chosen_per_kind, select
from tests.cli import run_cli


def test_class_attention_in_input_space_equals_projecting_every_token():
    torch.manual_seed(0)
    head = ClassAttentionPool(64, 5, heads=4)
    with torch.no_grad():       # non-zero biases: the key bias must cancel, the value bias pass
        head.kv.bias.normal_()
        head.q.bias.normal_()
    context = torch.randn(3, 17, 64)
    q = rearrange(head.q(context[:, :1]), "b one (a e) -> b a one e", a=4)
    k, v = rearrange(head.kv(context), "b n (two a e) -> two b a n e", two=2, a=4)
    reference = rearrange(F.scaled_dot_product_attention(q, k, v), "b a one e -> b one (a e)")
    assert torch.allclose(head._attend(context), reference, atol=1e-5)


def test_forward_layers_reads_blocks_through_the_final_norm():
    torch.manual_seed(0)
    vit = VideoViT(4, 16, (2, 8, 8), dim=32, depth=3, heads=2).eval()
    video = torch.randn(2, 3, 4, 16, 16)
    with torch.no_grad():
        last, first = vit.forward_layers(video, (-1, 0))
        assert torch.allclose(last, vit(video), atol=1e-6)
        assert torch.allclose(first, vit.norm(vit.blocks[0](vit.embed(video))), atol=1e-6)
    try:
        vit.forward_layers(video, (3,))
    except ValueError as error:
        assert "[-3, 2]" in str(error)
    else:
        raise AssertionError("a layer past the last block was accepted")


class RowEncoder(nn.Module):
    """Each clip's features are its first pixel value repeated: rows stay traceable."""

    def forward(self, video):
        return video[:, :1, 0, 0, 0][:, None, :].expand(-1, 2, 3)


def test_extract_groups_segments_along_tokens_and_keeps_views_apart():
    segments, views = 2, 3
    # Rows ordered clip, segment, view (the pipeline's evaluation order); value = 100·clip + 10·seg + view.
    values = torch.tensor([100 * c + 10 * s + v for c in range(2) for s in range(segments) for v in range(views)])
    video = values.float()[:, None, None, None, None].expand(-1, 1, 1, 1, 1)
    batch = {"video": video, "labels": {"label": torch.tensor([0, 1])}, "label": torch.tensor([0, 1]),
             "key": ["a", "b"]}
    found = extract(RowEncoder(), [batch], ["label"], (-1,), segments, views, True, torch.device("cpu"),
                    "fp32", "test")
    assert found.features.shape == (2, views, segments * 2, 3)
    clip1_view2 = found.features[1, 2, :, 0].float()
    assert clip1_view2.tolist() == [102, 102, 112, 112]   # both segments of view 2 of clip 1, in order


def test_cache_key_follows_the_weights_and_a_damaged_entry_is_extracted_again(tmp_path):
    torch.manual_seed(0)
    a, b = nn.Linear(3, 3), nn.Linear(3, 3)
    assert encoder_fingerprint(a) != encoder_fingerprint(b)
    b.load_state_dict(a.state_dict())
    assert encoder_fingerprint(a) == encoder_fingerprint(b)
    cache, calls = FeatureCache(str(tmp_path)), []

    def make():
        calls.append(1)
        return FeatureSet(torch.ones(2, 1, 1, 3), {"label": torch.tensor([0, 1])}, ["x", "y"])

    parts = {"encoder": encoder_fingerprint(a), "split": "train"}
    cache.get_or_extract(parts, make)
    again = cache.get_or_extract(parts, make)
    assert len(calls) == 1 and again.keys == ["x", "y"]
    (entry,) = tmp_path.glob("*.pt")
    entry.write_bytes(entry.read_bytes()[:20])            # truncated on disk
    cache.get_or_extract(parts, make)
    assert len(calls) == 2
    cache.get_or_extract(parts | {"encoder": encoder_fingerprint(nn.Linear(3, 3))}, make)
    assert len(calls) == 3


def test_selection_uses_the_selection_split_not_the_reported_one():
    labels = {"label": torch.tensor([0, 1, 1, 0])}
    good = F.one_hot(labels["label"], 2).float()
    probs = {"label": {"a": 1 - good, "b": good}}
    assert select(probs, labels) == {"label": "b"}
    tie = {"label": {"a": good, "b": good}}
    assert select(tie, labels) == {"label": "a"}


def test_each_kind_is_chosen_on_the_selection_split_among_its_own_probes():
    def row(head, name, kind, select_top1, report_top1):
        return {"label_head": head, "probe": name, "kind": kind, "select_top1": select_top1,
                "report_top1": report_top1}
    table = [row("verb", "a1", "attentive", 0.9, 0.5), row("verb", "a2", "attentive", 0.9, 0.7),
             row("verb", "l1", "linear", 0.3, 0.9), row("verb", "l2", "linear", 0.6, 0.4),
             row("noun", "l1", "linear", 0.99, 0.99)]
    best = chosen_per_kind(table, "verb")
    # The attentive tie goes to the first in grid order; the linear pick ignores the reported split.
    assert {kind: r["probe"] for kind, r in best.items()} == {"attentive": "a1", "linear": "l2"}


def test_held_out_split_is_a_function_of_the_key_only():
    keys = [f"clip{i}" for i in range(400)]
    mask = held_out(keys, 0.2)
    assert 0.1 < mask.float().mean() < 0.3
    assert held_out(list(reversed(keys)), 0.2).tolist() == list(reversed(mask.tolist()))


def test_plan_splits_reports_test_when_the_manifest_has_one():
    class Manifest:
        name, splits = "m", {"train": 0, "val": 0}
    assert plan_splits(Manifest, 0.2).select is None
    Manifest.splits = {"train": 0, "val": 0, "test": 0}
    assert (plan_splits(Manifest, 0.0).select, plan_splits(Manifest, 0.0).report) == ("val", "test")


def test_grid_probes_learn_and_only_the_good_settings_win():
    """Two separable classes in one token dimension: every reasonable learning rate learns it,
    a vanishing one does not; the grid has one group of parameters per member setting."""
    torch.manual_seed(0)
    n = 256
    labels = torch.randint(2, (n,))
    features = torch.randn(n, 1, 4, 8) * 0.1
    features[:, 0, :, 0] += labels[:, None].float() * 2 - 1
    grid = ProbeGrid(kinds=("attentive", "linear"), lrs=(1e-9, 1e-2), weight_decays=(0.0, 0.1))
    probes = GridProbes(grid.members(), 8, {"label": 2}, features)
    assert len(grid.members()) == 8
    optimizer = torch.optim.AdamW(probes.param_groups())
    rows = features[:, 0]
    for _ in range(60):
        optimizer.zero_grad()
        probes.loss(rows, {"label": labels}).backward()
        optimizer.step()
    found = FeatureSet(features, {"label": labels}, [str(i) for i in range(n)])
    probs = probes.predict(found, 64, torch.device("cpu"))["label"]
    accuracy = {name: float((p.argmax(1) == labels).float().mean()) for name, p in probs.items()}
    assert all(accuracy[name] > 0.95 for name in accuracy if "lr0.01" in name), accuracy
    assert all(accuracy[name] < 0.9 for name in accuracy if "lr1e-09" in name), accuracy


def test_knn_separates_clusters_and_not_shuffled_labels():
    torch.manual_seed(0)
    centres = torch.randn(3, 16) * 5
    labels = torch.arange(300) % 3
    features = (centres[labels] + torch.randn(300, 16))[:, None, None, :]
    fit = FeatureSet(features[:200], {"label": labels[:200]}, [str(i) for i in range(200)])
    report = FeatureSet(features[200:], {"label": labels[200:]}, [str(i) for i in range(100)])
    assert knn_top1(fit, report, {"label": 3}, k=10)["label"] > 0.95
    shuffled = FeatureSet(fit.features, {"label": fit.labels["label"][torch.randperm(200)]}, fit.keys)
    assert knn_top1(shuffled, report, {"label": 3}, k=10)["label"] < 0.6


def test_probe_run_trains_the_grid_from_one_extraction_and_reuses_it(tmp_path):
    """Two runs of ``run.py probe`` on the same random encoder (same seed): the first writes the
    two splits' features and records ≥ 8 probes; the second reads both from the cache."""
    runs, work = tmp_path / "runs", tmp_path / "work"
    args = ["probe", "-g", "gin/experiments/tiny_cpu.gin", "-g", "gin/probes/grid.gin",
            "-b", "probe_loop.pretrained = None", "-b", "probe_loop.steps = 3", "-b", f"WORKDIR = '{work}'",
            "-b", "dataset.synthetic_motion.train_samples = 48", "-b", "dataset.synthetic_motion.val_samples = 16",
            "-b", "backbone.vit.depth = 1", "-b", "data_pipeline.workers = 0", "with", "seed=3"]
    first = run_cli(args, runs, env={"OMP_NUM_THREADS": "1"})
    assert first.returncode == 0, first.stderr[-3000:]
    assert "(cache: 0 read, 2 written)" in first.stdout
    second = run_cli(args, runs, env={"OMP_NUM_THREADS": "1"})
    assert second.returncode == 0, second.stderr[-3000:]
    assert "(cache: 2 read, 0 written)" in second.stdout
    folder = runs / "2"
    with open(folder / "probe_heads.csv", newline="") as handle:
        table = list(csv.DictReader(handle))
    assert len(table) == 16 and sum(row["chosen"] == "True" for row in table) == 1
    chosen = next(row for row in table if row["chosen"] == "True")
    assert float(chosen["select_top1"]) == max(float(row["select_top1"]) for row in table)
    metrics = json.loads((folder / "metrics.json").read_text())
    assert metrics["eval/top1"]["values"] == [float(chosen["report_top1"])]
    assert "knn/top1" in metrics and (folder / "probe_heads.png").exists()
    # Each kind of probe is also reported alone: its best member on the selection split.
    for kind in ("attentive", "linear"):
        rows = [row for row in table if row["kind"] == kind]
        best = max(float(row["select_top1"]) for row in rows)
        first_best = next(row for row in rows if float(row["select_top1"]) == best)
        assert metrics[f"eval/{kind}/top1"]["values"] == [float(first_best["report_top1"])]
