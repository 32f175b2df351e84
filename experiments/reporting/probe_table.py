"""The per-probe table and picture of a probe-grid run: every member's accuracy on the split it
was chosen on and on the reported split, the chosen one marked."""
from __future__ import annotations

import csv
import os

COLUMNS = ("label_head", "probe", "kind", "lr", "weight_decay", "select_top1", "report_top1", "chosen")


def write_table(rows: list[dict], path: str) -> str:
    """rows (dicts with COLUMNS) → CSV at ``path``."""
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    return path


def markdown(rows: list[dict]) -> str:
    lines = ["| head | probe | select top-1 | report top-1 | |", "|---|---|---|---|---|"]
    lines += [f"| {r['label_head']} | {r['probe']} | {r['select_top1']:.3f} | {r['report_top1']:.3f} | "
              f"{'chosen' if r['chosen'] else ''} |" for r in rows]
    return "\n".join(lines)


def plot(rows: list[dict], path: str, title: str) -> str:
    """Grouped bars per probe (selection vs report top-1), one panel per label head."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    heads = list(dict.fromkeys(r["label_head"] for r in rows))
    members = list(dict.fromkeys(r["probe"] for r in rows))
    width = max(6.0, 0.45 * len(members) + 2)
    figure, axes = plt.subplots(len(heads), 1, figsize=(width, 3.2 * len(heads)), squeeze=False)
    for axis, head in zip(axes[:, 0], heads):
        mine = [r for r in rows if r["label_head"] == head]
        xs = range(len(mine))
        axis.bar([x - 0.2 for x in xs], [r["select_top1"] for r in mine], 0.4, label="selection split")
        axis.bar([x + 0.2 for x in xs], [r["report_top1"] for r in mine], 0.4, label="reported split")
        for x, r in zip(xs, mine):
            if r["chosen"]:
                axis.annotate("chosen", (x, r["report_top1"]), ha="center", va="bottom", fontsize=8)
        axis.set_xticks(list(xs), [r["probe"] for r in mine], rotation=60, ha="right", fontsize=7)
        axis.set_ylim(0, 1.2)          # headroom for the legend above the bars
        axis.set_ylabel(f"{head} top-1")
        axis.legend(fontsize=7, loc="upper left", ncol=2)
    axes[0, 0].set_title(title)
    figure.tight_layout()
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    figure.savefig(path, dpi=80)
    plt.close(figure)
    return path
