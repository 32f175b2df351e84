"""``python run.py new KIND NAME [--dir FOLDER]``: writes a plugin to start from — a module
``NAME.py`` registering ``KIND.NAME``, a gin file ``NAME.gin`` that imports it and puts it in
its slot, and a pytest ``test_NAME.py`` that runs the contract kit on it. All three pass as
written; edit the marked rule, keep the test green.

    python run.py new masking.decoder last_frames --dir my_plugins
    cd my_plugins && python -m pytest -q test_last_frames.py
    PYTHONPATH=my_plugins python run.py pretrain -g gin/experiments/tiny_cpu.gin -g my_plugins/last_frames.gin
"""
from __future__ import annotations

import argparse
import keyword
import os
import string
import sys

from lvmae.experiments import program

# ---------------------------------------------------------------------------------------------
# One template per kind: the module ($name, $cls), the gin lines that use it, and the kit check.

_MASKING_ENCODER = '''"""masking.encoder.$name: which tokens the encoder sees."""
from __future__ import annotations

import torch

from lvmae.components.masking.base import EncoderMasking, random_order
from lvmae.components.masking.plan import TokenGrid, count_from_ratio
from lvmae.registry import register


@register("masking.encoder.$name")
class $cls(EncoderMasking):
    """Keeps ``keep_ratio`` of all tokens, uniformly at random (replace with your rule)."""

    def __init__(self, keep_ratio: float = 0.1):
        count_from_ratio(keep_ratio, 1, "masking.encoder.$name.keep_ratio")   # validate early
        self.keep_ratio = float(keep_ratio)

    def count(self, grid: TokenGrid) -> int:
        """k: tokens every clip keeps (the plan checks the output against it)."""
        return count_from_ratio(self.keep_ratio, grid.n, "masking.encoder.$name.keep_ratio")

    def __call__(self, grid: TokenGrid, batch_size: int, generator: torch.Generator) -> torch.Tensor:
        """→ enc_keep_idx (b, k) long, sorted ascending, unique, on the generator's device."""
        order = random_order(batch_size, grid.n, generator)
        return order[:, :self.count(grid)].sort(dim=1).values
'''

_MASKING_DECODER = '''"""masking.decoder.$name: which tokens the decoder reconstructs."""
from __future__ import annotations

import torch

from lvmae.components.masking.base import DecoderMasking
from lvmae.components.masking.plan import TokenGrid, count_from_ratio
from lvmae.registry import register


@register("masking.decoder.$name")
class $cls(DecoderMasking):
    """Reconstructs ``budget`` of all tokens, drawn among those the encoder did not keep
    (replace with your rule; set ``needs_scores = True`` to receive scorer scores)."""

    needs_scores = False            # True: __call__ gets scores (b, t, h, w), else None
    decodes_kept_tokens = False     # True: targets may be encoder-kept tokens (loss weight 0)

    def __init__(self, budget: float = 0.15):
        count_from_ratio(budget, 1, "masking.decoder.$name.budget")          # validate early
        self.budget = float(budget)

    def count(self, grid: TokenGrid, kept: int) -> int:
        """q: targets per clip when the encoder keeps ``kept`` tokens."""
        return min(count_from_ratio(self.budget, grid.n, "masking.decoder.$name.budget"), grid.n - kept)

    def __call__(self, grid: TokenGrid, enc_keep_idx: torch.Tensor, generator: torch.Generator,
                 scores: torch.Tensor | None = None) -> torch.Tensor:
        """→ dec_target_idx (b, q) long, unique per row."""
        batch_size, kept = enc_keep_idx.shape
        noise = torch.rand(batch_size, grid.n, generator=generator, device=generator.device)
        noise.scatter_(1, enc_keep_idx, float("inf"))         # encoder-kept tokens sort last
        return noise.argsort(dim=1)[:, :self.count(grid, kept)]
'''

_SCORER = '''"""scorer.$name: per-token importance on the token grid."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from lvmae.components.scorers.base import FirstFrame, Scorer, check_choice, check_stride
from lvmae.registry import register


@register("scorer.$name")
class $cls(Scorer):
    """Mean absolute change of each token's pixels from the previous latent frame
    (replace with your rule)."""

    def __init__(self, stride: tuple[int, int, int] = (2, 16, 16), first_frame: FirstFrame = "zero"):
        super().__init__()
        self.stride = check_stride(stride, "scorer.$name.stride")
        self.first_frame = check_choice(first_frame, FirstFrame, "scorer.$name.first_frame")
        self._config = dict(stride=list(self.stride), first_frame=first_frame)

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        """video (b, C, T, H, W) → scores (b, t, h, w)."""
        self.check_video(video)
        pooled = F.avg_pool3d(video.float().mean(dim=1, keepdim=True), self.stride)[:, 0]   # (b, t, h, w)
        return self.with_first_frame((pooled[:, 1:] - pooled[:, :-1]).abs())
'''

_TARGET = '''"""target.$name: what the decoder reconstructs at its targets, and the per-token loss."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange

from lvmae.components.masking.plan import MaskPlan
from lvmae.components.targets.base import Target
from lvmae.registry import register


@register("target.$name")
class $cls(Target):
    """Each token's mean colour (C values), regressed with MSE (replace with your target)."""

    term = "$name"                  # logged as train/loss/$name

    def channels(self, in_channels: int, tubelet: tuple[int, int, int]) -> int:
        return in_channels

    def forward(self, batch: dict, plan: MaskPlan, tubelet: tuple[int, int, int]) -> torch.Tensor:
        """batch video (b, C, T, H, W) → target (b, q, C) at plan.dec_target_idx."""
        pooled = F.avg_pool3d(batch["video"].float(), tuple(tubelet))          # (b, C, t, h, w)
        tokens = rearrange(pooled, "b c t h w -> b (t h w) c")
        index = plan.dec_target_idx[..., None].expand(-1, -1, tokens.shape[-1])
        return torch.gather(tokens, 1, index)

    def per_token_loss(self, prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """(b, q, c) → (b, q)."""
        return (prediction - target).pow(2).mean(dim=-1)
'''

_QUANTIZER = '''"""quantizer.$name: continuous latents → codes of an implicit codebook."""
from __future__ import annotations

import torch

from lvmae.components.tokenizers.quantizer import Quantized, Quantizer, no_autocast
from lvmae.registry import register


@register("quantizer.$name")
class $cls(Quantizer):
    """One bit per latent channel: code = sign(x) in {-1, 1}, codebook 2**dim
    (replace with your quantizer)."""

    def __init__(self, dim: int = 4):
        super().__init__()
        if dim < 1:
            raise ValueError(f"quantizer.$name.dim must be ≥ 1, got {dim}")
        self.dim = int(dim)
        self.codebook_size = 2 ** self.dim
        self._config = dict(dim=self.dim)

    def forward(self, latents: torch.Tensor) -> Quantized:
        """latents (b, d, ...) → codes (b, d, ...) (straight-through), indices (b, ...)."""
        with no_autocast(latents):
            values = latents.float()
            codes = torch.where(values > 0, 1.0, -1.0) + (values - values.detach())
            indices = self.codes_to_indices(codes.detach().movedim(1, -1))
        return Quantized(codes, indices)

    def _powers(self, device: torch.device) -> torch.Tensor:
        return 2 ** torch.arange(self.dim, device=device)

    def codes_to_indices(self, codes: torch.Tensor) -> torch.Tensor:
        """codes (..., d) → indices (...)."""
        return ((codes > 0).long() * self._powers(codes.device)).sum(dim=-1)

    def indices_to_codes(self, indices: torch.Tensor) -> torch.Tensor:
        """indices (...) → codes (..., d) float32."""
        bits = (indices[..., None] // self._powers(indices.device)) % 2
        return bits.float() * 2 - 1
'''

_TOKENIZER = '''"""tokenizer.$name: video ↔ latents and token ids on the token grid."""
from __future__ import annotations

import torch
from torch import nn

from lvmae.components.tokenizers.base import Tokenizer, component_config
from lvmae.components.tokenizers.fsq import FSQ
from lvmae.components.tokenizers.quantizer import Quantizer
from lvmae.registry import register


@register("tokenizer.$name")
class $cls(Tokenizer):
    """One strided 3-D convolution each way around a quantizer (replace with your network).
    Non-causal: T frames → T / stride[0] latent frames."""

    def __init__(self, in_channels: int = 3, stride: tuple[int, int, int] = (2, 16, 16),
                 window_frames: int = 16, quantizer: Quantizer | None = None):
        super().__init__()
        self.in_channels = int(in_channels)
        self.stride = tuple(int(s) for s in stride)
        self.window_frames = int(window_frames)
        self.quantizer = quantizer if quantizer is not None else FSQ(levels=(8, 8, 8, 8))
        self.encoder = nn.Conv3d(self.in_channels, self.quantizer.dim, self.stride, self.stride)
        self.decoder = nn.ConvTranspose3d(self.quantizer.dim, self.in_channels, self.stride, self.stride)
        self._config = dict(in_channels=self.in_channels, stride=list(self.stride),
                            window_frames=self.window_frames, quantizer=component_config(self.quantizer))

    def encode_continuous(self, video: torch.Tensor) -> torch.Tensor:
        """video (b, C, T, H, W) → latents (b, d, t, h, w)."""
        self.check_video(video)
        return self.encoder(video)

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """latents (b, d, t, h, w) → video (b, C, T, H, W)."""
        return self.decoder(latents)
'''

_BACKBONE = '''"""backbone.$name: a video encoder run on the tokens the encoder masking keeps."""
from __future__ import annotations

import torch
from einops import rearrange
from torch import nn

from lvmae.components.masking.plan import TokenGrid
from lvmae.registry import register


@register("backbone.$name")
class $cls(nn.Module):
    """Tubelet embedding + learned positions + one residual MLP (replace with your network).

    The contract: attributes ``grid`` (TokenGrid), ``tubelet``, ``dim``, ``in_channels`` and
    forward(video (b, C, T, H, W), enc_keep_idx (b, k) or None) → features (b, k or n, dim).
    """

    def __init__(self, clip_frames: int = 16, image_size: int = 224,
                 tubelet: tuple[int, int, int] = (2, 16, 16), dim: int = 192, in_channels: int = 3):
        super().__init__()
        tt, th, tw = (int(s) for s in tubelet)
        if clip_frames % tt or image_size % th or image_size % tw:
            raise ValueError(f"backbone.$name: clip_frames={clip_frames} and image_size={image_size} "
                             f"must be divisible by the tubelet {tuple(tubelet)}")
        self.tubelet, self.dim, self.in_channels = (tt, th, tw), int(dim), int(in_channels)
        self.grid = TokenGrid(clip_frames // tt, image_size // th, image_size // tw)
        self.patch_embed = nn.Conv3d(in_channels, dim, self.tubelet, self.tubelet)
        self.pos_embed = nn.Parameter(torch.zeros(1, self.grid.n, dim))
        self.mlp = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, dim), nn.GELU(), nn.Linear(dim, dim))

    def forward(self, video: torch.Tensor, enc_keep_idx: torch.Tensor | None = None) -> torch.Tensor:
        tokens = rearrange(self.patch_embed(video), "b d t h w -> b (t h w) d") + self.pos_embed
        if enc_keep_idx is not None:
            tokens = torch.gather(tokens, 1, enc_keep_idx[..., None].expand(-1, -1, self.dim))
        return tokens + self.mlp(tokens)
'''

_TOPK = '''"""topk.$name: a differentiable top-k selector."""
from __future__ import annotations

import torch

from lvmae.components.topk.base import TopK, hard_topk_mask
from lvmae.registry import register


@register("topk.$name")
class $cls(TopK):
    """Hard top-k forward, sigmoid(scores / temperature) gradient backward (replace with
    your relaxation)."""

    def __init__(self, temperature: float = 1.0):
        super().__init__()
        if not temperature > 0:
            raise ValueError(f"topk.$name.temperature must be > 0, got {temperature!r}")
        self.temperature = float(temperature)

    def forward(self, scores: torch.Tensor, k: int,
                generator: torch.Generator | None = None) -> torch.Tensor:
        """scores (b, m), k → selection (b, m), exactly k ones per row forward."""
        soft = torch.sigmoid(scores / self.temperature)
        return hard_topk_mask(scores, k) + soft - soft.detach()
'''

_DATASET = '''"""dataset.$name: a generated dataset written as WebDataset shards with a manifest."""
from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from lvmae.components.data.datasets.base import Dataset
from lvmae.components.data.formats.manifest import Manifest, Split
from lvmae.components.data.writing.writer import generated_folder, publish_generated, write_shards
from lvmae.registry import register

LABELS = ["dark", "bright"]


@register("dataset.$name")
class $cls(Dataset):
    """Noise clips whose label is their brightness (replace _samples with your clips).
    Shards go to ``root/$name-<fingerprint of the parameters>/``."""

    # The data pipeline's augmentations that keep the labels (brightness survives a mirror and a
    # crop); leave out one that changes them and say why in label_changes (docs/data.md §4).
    label_preserving_augmentations = ("crop", "flip")

    def __init__(self, root: str = "data", clip_frames: int = 16, image_size: int = 32,
                 train_samples: int = 8, val_samples: int = 4, samples_per_shard: int = 4,
                 seed: int = 0, fps: float = 8.0):
        self.params = dict(clip_frames=clip_frames, image_size=image_size, train_samples=train_samples,
                           val_samples=val_samples, samples_per_shard=samples_per_shard, seed=seed, fps=fps)
        self.folder = generated_folder(root, "$name", self.params)

    def _samples(self, split: str, count: int, seed: int) -> Iterator[dict]:
        rng = np.random.default_rng(seed)
        frames, size = self.params["clip_frames"], self.params["image_size"]
        for i in range(count):
            label = int(rng.integers(len(LABELS)))
            clip = rng.integers(0, 128, (frames, size, size, 3)) + 127 * label     # (T, H, W, C)
            yield {"__key__": f"{split}_{i:06d}", "npy": clip.astype(np.uint8),
                   "json": {"label": label, "fps": self.params["fps"], "source": "$name",
                            "frames": [0, frames]}}

    def prepare(self) -> Manifest:
        return publish_generated(self.folder, self._write)

    def _write(self, staging: str) -> Manifest:
        p, splits = self.params, {}
        for offset, (split, count) in enumerate([("train", p["train_samples"]), ("val", p["val_samples"])]):
            shards = write_shards(self._samples(split, count, p["seed"] * 1000 + offset), staging, split,
                                  p["samples_per_shard"])
            splits[split] = Split(shards=f"{split}-{{000000..{shards - 1:06d}}}.tar", samples=count)
        return Manifest(name="$name", splits=splits, heads={"label": LABELS}, fps=p["fps"],
                        clip_frames=p["clip_frames"])
'''

_DECODER = '''"""decoder.$name: the MAE decoder, run on the kept tokens plus one query per target."""
from __future__ import annotations

import torch
from torch import nn

from lvmae.components.backbones.mae_decoder import gather_tokens
from lvmae.components.masking.plan import MaskPlan, TokenGrid
from lvmae.registry import register


@register("decoder.$name")
class $cls(nn.Module):
    """Each target = its position + the mean of the kept tokens, through an MLP (replace
    with your network). model.mae builds it with encoder_dim, out_dim and grid."""

    def __init__(self, encoder_dim: int, out_dim: int, grid: TokenGrid, dim: int = 128):
        super().__init__()
        self.proj_in = nn.Linear(encoder_dim, dim)
        self.pos_embed = nn.Parameter(torch.randn(1, grid.n, dim) * 0.02)
        self.head = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, dim), nn.GELU(), nn.Linear(dim, out_dim))

    def forward(self, enc_features: torch.Tensor, plan: MaskPlan) -> torch.Tensor:
        """enc_features (b, k, encoder_dim), plan → predictions (b, q, out_dim)."""
        context = self.proj_in(enc_features).mean(dim=1, keepdim=True)                 # (b, 1, dim)
        positions = self.pos_embed.expand(enc_features.shape[0], -1, -1)
        return self.head(gather_tokens(positions, plan.dec_target_idx) + context)
'''

_HEAD = '''"""head.$name: a classification head for fine-tuning."""
from __future__ import annotations

import torch
from torch import nn

from lvmae.registry import register


@register("head.$name")
class $cls(nn.Module):
    """Max over tokens, LayerNorm, linear (replace with your head). model.classifier builds
    one per label head with dim and num_classes."""

    def __init__(self, dim: int, num_classes: int):
        super().__init__()
        if dim < 1 or num_classes < 1:
            raise ValueError(f"head.$name: dim and num_classes must be ≥ 1, got {dim}, {num_classes}")
        self.norm = nn.LayerNorm(dim)
        self.fc = nn.Linear(dim, num_classes)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """features (b, n, dim) → logits (b, num_classes)."""
        return self.fc(self.norm(features.amax(dim=1)))
'''


#: kind → (module template, gin lines, kit check, constructor arguments in the test)
KINDS: dict[str, tuple[str, str, str, str]] = {
    "masking.encoder": (_MASKING_ENCODER, ("model.mae.encoder_masking = @masking.encoder.$name()\n"
                                           "masking.encoder.$name.keep_ratio = 0.1\n"),
                        "check_encoder_masking", ""),
    "masking.decoder": (_MASKING_DECODER, ("model.mae.decoder_masking = @masking.decoder.$name()\n"
                                           "masking.decoder.$name.budget = 0.15\n"),
                        "check_decoder_masking", ""),
    "scorer": (_SCORER, "model.mae.scorer = @scorer.$name()\nscorer.$name.first_frame = 'zero'\n",
               "check_scorer", ""),
    "target": (_TARGET, "model.mae.target = @target.$name()\n", "check_target", ""),
    "quantizer": (_QUANTIZER, "tokenizer.magvit.quantizer = @quantizer.$name()\nquantizer.$name.dim = 4\n",
                  "check_quantizer", ""),
    "tokenizer": (_TOKENIZER, ("model.adaptive_tokenizer.tokenizer = @tokenizer.$name()\n"
                               "tokenizer.$name.window_frames = 16\n"), "check_tokenizer", ""),
    "backbone": (_BACKBONE, "ENCODER = @backbone.$name()\nbackbone.$name.dim = 192\n", "check_backbone", ""),
    "topk": (_TOPK, "model.adaptive_tokenizer.topk = @topk.$name()\ntopk.$name.temperature = 1.0\n",
             "check_topk", ""),
    "dataset": (_DATASET, "DATASET = @dataset.$name()\ndataset.$name.root = 'data'\n", "check_dataset",
                "root=str(tmp_path)"),
    "decoder": (_DECODER, "model.mae.decoder = @decoder.$name\ndecoder.$name.dim = 128\n", "check_decoder", ""),
    "head": (_HEAD, "model.classifier.head = @head.$name\n", "check_head", ""),
}
#: Kinds a model builds itself with its sizes (gin binds them without parentheses): the test
#: gives the kit the class, which the kit builds.
FACTORY_KINDS = ("decoder", "head")

_GIN = '''# $kind.$name — the import line loads the plugin module (it must be importable: on
# PYTHONPATH or beside run.py); then the component goes into its slot. Use it after an
# experiment file, e.g.
#   PYTHONPATH=$folder python run.py pretrain -g gin/experiments/tiny_cpu.gin -g $gin_path
# Moved into lvmae's components/ folder, the module is found by lvmae itself: delete the
# import line then (it would import the module a second time, under another name).
$import_line
$lines'''
# What the gin file says instead of the import line for a module written under components/.
_DISCOVERED = "# (no import line: lvmae imports every module under components/ itself)"

_TEST = '''"""Contract test of $kind.$name (written by `run.py new`): the kit runs the plugin on the
shapes lvmae uses and fails naming it when a contract is broken."""
import os

import gin

from lvmae import registry
from lvmae.components import kit
from lvmae.experiments.engine import gin_config

import $name   # registers $kind.$name

HERE = os.path.dirname(os.path.abspath(__file__))


def test_${name}_contract(tmp_path):
    kit.$check($subject)


def test_${name}_gin_file_builds_it(tmp_path):
    gin_config.parse([os.path.join(HERE, "$name.gin")], [])
    try:
        $gin_check
    finally:
        gin.clear_config()
'''


def class_name(name: str) -> str:
    return "".join(part.capitalize() for part in name.split("_"))


def in_components(folder: str) -> bool:
    """Whether ``folder`` lies under lvmae's own ``components/`` (auto-discovered modules)."""
    from lvmae.experiments.engine.gin_config import GIN_ROOT
    components = os.path.realpath(os.path.join(GIN_ROOT, "components"))
    return os.path.commonpath([components, os.path.realpath(folder)]) == components


def render(kind: str, name: str, folder: str = ".") -> dict[str, str]:
    """The three files ``new`` writes: {file name: text}."""
    if kind not in KINDS:
        raise ValueError(f"unknown kind {kind!r}; `new` writes: {', '.join(KINDS)}")
    if not name.isidentifier() or name != name.lower() or keyword.iskeyword(name) or name.startswith("test"):
        raise ValueError(f"NAME must be a snake_case Python identifier (it is the module name too), "
                         f"not starting with 'test'; got {name!r}")
    module, gin_lines, check, args = KINDS[kind]
    cls = class_name(name)
    factory = kind in FACTORY_KINDS
    build_args = f", {args}" if args else ""
    gin_check = (f'kit.check_component("{kind}.{name}")   # built with the sizes a model gives it' if factory
                 else f'assert isinstance(registry.build("{kind}.{name}"{build_args}), {name}.{cls})')
    values = dict(kind=kind, name=name, cls=cls, check=check, args=args, gin_check=gin_check,
                  subject=f"{name}.{cls}" if factory else f"{name}.{cls}({args})", folder=folder,
                  gin_path=os.path.join(folder, f"{name}.gin"))
    values["lines"] = string.Template(gin_lines).substitute(values)
    values["import_line"] = _DISCOVERED + "\n" if in_components(folder) else f"import {name}\n"
    return {f"{name}.py": string.Template(module).substitute(values),
            f"{name}.gin": string.Template(_GIN).substitute(values),
            f"test_{name}.py": string.Template(_TEST).substitute(values)}


def write(kind: str, name: str, folder: str = ".", force: bool = False) -> list[str]:
    """Writes the files into ``folder``; refuses to overwrite unless ``force``."""
    files = render(kind, name, folder)
    paths = [os.path.join(folder, file) for file in files]
    existing = [path for path in paths if os.path.exists(path)]
    if existing and not force:
        raise FileExistsError(f"{program.name()} new: {', '.join(existing)} already exist(s); nothing written "
                              "(--force overwrites)")
    os.makedirs(folder, exist_ok=True)
    for path, text in zip(paths, files.values()):
        with open(path, "w", encoding="utf-8") as handle:
            handle.write(text)
    return paths


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog=f"{program.name()} new", description="Write a plugin module, its gin file and a contract test "
        "that passes the kit (python -m pytest test_NAME.py).")
    parser.add_argument("kind", choices=sorted(KINDS), metavar="KIND", help=f"one of: {', '.join(KINDS)}")
    parser.add_argument("name", metavar="NAME", help="snake_case; the registry name is KIND.NAME")
    parser.add_argument("--dir", default=".", help="folder to write into (default: the current one)")
    parser.add_argument("--force", action="store_true", help="overwrite existing files")
    args = parser.parse_args(argv)
    try:
        paths = write(args.kind, args.name, args.dir, args.force)
    except (ValueError, FileExistsError) as error:
        print(f"{program.name()} new: {error}", file=sys.stderr)
        return 2
    print("wrote " + ", ".join(paths))
    print(f"test it:  cd {args.dir} && python -m pytest -q test_{args.name}.py")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
