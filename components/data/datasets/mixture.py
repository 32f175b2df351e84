"""``dataset.mixture``: several datasets pre-trained on at once, each clip drawn from source i with
probability weights[i] / Σ weights (V-JEPA 2 mixes K710 / SSv2 / HowTo100M at 0.335 / 0.1 / 0.565).

    DATASET = @dataset.mixture()
    dataset.mixture.sources = [@epic/dataset.manifest(), @diving/dataset.manifest()]
    dataset.mixture.weights = [0.7, 0.3]
    dataset.mixture.pipelines = [@epic/data_pipeline(), @diving/data_pipeline()]   # optional
    diving/data_pipeline.short_policy = 'pad'   # each source its own frames, fps/stride, short clips

Each source is read by its own data pipeline (``pipelines[i]``, default the command's), so each
has its own temporal sampling, frame rate and short-clip policy; every source must give the
command's output shape (``clip_frames`` × ``size``²), checked when the loader is built. The draw
order is a function of (seed, clip number) only — deterministic and resumable at its position
(components/data/reading/mixture_loader.py); the clips drawn from each source are logged in the run
(``info["data_drawn"]``). gin/data/mixture_example.gin mixes two real-footage datasets.

Training only: a command that evaluates reads one dataset (evaluating a mixture would mix the
reported numbers of two tasks); fine-tuning on a mixture reports ``finetune_loop.eval_dataset``.
"""
from __future__ import annotations

import dataclasses
import math

from lvmae.components.data.datasets.base import Dataset
from lvmae.components.data.formats.manifest import Manifest, Split
from lvmae.components.data.formats.shard_index import manifest_paths_of
from lvmae.registry import register

MIXED_SPLIT = "train"


@dataclasses.dataclass
class MixedManifest(Manifest):
    """What ``dataset.mixture.prepare()`` returns: a manifest of the mixture (its ``train`` split
    counts every source's samples; heads and unsafe augmentations are the sources' union)
    plus, in ``parts``, each source's (name, manifest, weight, pipeline or None)."""
    parts: list = dataclasses.field(default_factory=list)


@register("dataset.mixture")
class MixtureDataset(Dataset):
    """Several datasets with weights (see the module docstring).

    Args:
      sources: datasets (``@dataset.manifest()``, generated sets …) or manifest paths.
      weights: one per source, > 0 (normalised to sum to 1).
      pipelines: one ``data_pipeline`` per source (None entries, or no list: the command's).
    """

    def __init__(self, sources: list, weights: list[float], pipelines: list | None = None):
        if not sources:
            raise ValueError("dataset.mixture.sources: give at least one dataset")
        if len(weights) != len(sources) or not all(math.isfinite(w) and w > 0 for w in weights):
            raise ValueError(f"dataset.mixture.weights must be {len(sources)} positive numbers (one per source), "
                             f"got {list(weights)}")
        if pipelines is not None and len(pipelines) != len(sources):
            raise ValueError(f"dataset.mixture.pipelines: one per source ({len(sources)}), got {len(pipelines)}")
        self.sources, self.weights = list(sources), [float(w) for w in weights]
        self.pipelines = list(pipelines) if pipelines is not None else [None] * len(sources)

    def source_name(self, index: int) -> str:
        source = self.sources[index]
        return str(source) if isinstance(source, str) else getattr(source, "display_name", type(source).__name__)

    def prepare(self) -> MixedManifest:
        from lvmae.components.data.reading.pipeline import _as_manifest  # pylint: disable=import-outside-toplevel
        manifests = [_as_manifest(source) for source in self.sources]
        for index, manifest in enumerate(manifests):
            if MIXED_SPLIT not in manifest.splits:
                raise ValueError(f"dataset.mixture source {index} ({self.source_name(index)}) has no "
                                 f"{MIXED_SPLIT!r} split; splits: {list(manifest.splits)}")
            if manifest.fields:
                raise ValueError(f"dataset.mixture source {index} ({self.source_name(index)}) carries precomputed "
                                 f"fields {manifest.fields}: a mixture reads pixels only")
        heads: dict[str, list[str]] = {}
        for manifest in manifests:
            for head, names in manifest.heads.items():
                heads.setdefault(head, list(names))
        unsafe = {aug: why for index, manifest in enumerate(manifests) if self.pipelines[index] is None
                  for aug, why in manifest.unsafe_augmentations.items()}
        total = sum(m.splits[MIXED_SPLIT].samples for m in manifests)
        parts = [(self.source_name(i), m, w, p) for i, (m, w, p) in enumerate(zip(manifests, self.weights,
                                                                                 self.pipelines))]
        return MixedManifest(name="mixture(" + ", ".join(m.name for m in manifests) + ")",
                             splits={MIXED_SPLIT: Split(shards="", samples=total)}, heads=heads,
                             codec=manifests[0].codec, unsafe_augmentations=unsafe, parts=parts)

    def unsafe_augmentations(self) -> dict[str, str]:
        """The union over the sources read by the command's pipeline (a source with its own
        pipeline is checked against that one when the loader is built)."""
        unsafe = {}
        for source, pipeline in zip(self.sources, self.pipelines):
            if pipeline is None and isinstance(source, Dataset):
                unsafe.update(source.unsafe_augmentations())
        return unsafe

    def manifest_paths(self) -> list[str]:
        """Every source's manifest file (preflight checks their shards)."""
        return [path for source in self.sources for path in manifest_paths_of(source)]
