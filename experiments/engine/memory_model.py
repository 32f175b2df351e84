"""Analytic memory and FLOPs of one dual-masking MAE training step (forward, backward, AdamW).

Axis legend (per clip): n tokens of the grid, k tokens the encoder sees, q decoder targets,
d a stack's width, h its MLP hidden width, a its heads, c target channels, V video elements
(channels·T·H·W).

Memory is counted from what each operation keeps for backward in *this* implementation
(``components/backbones/transformer.py``), not from a generic rule:

- one pre-norm block saves, per token, both LayerNorm inputs (2d; float32 under CUDA's bf16
  autocast, which runs layer_norm in float32; the CPU's autocast leaves them in bf16), the
  two linear inputs after the norms (2d), q/k/v (3d, one storage), the attention output that
  is also the projection's input (d), the MLP's hidden activations before and after GELU
  (2h), plus the norms' mean/rstd (4 floats) and the attention's log-sum-exp (a floats).
  Dense (materialised) attention adds its probabilities (a·n per token); flash /
  memory-efficient SDPA does not.
- with activation checkpointing a block saves only its input and recomputes the rest during
  backward, one block at a time.
- around the stacks: the encoder's final norm, the decoder's projection input, its final
  norm and head inputs, the prediction (held by the training loop) and the loss's
  difference (float32); bf16 autocast keeps a bf16 copy of the video for the patch
  embedding and of every matmul weight (the autocast cache).
- live state: float32 weights, buffers (fixed position tables), AdamW's two moments,
  gradients (allocated during backward, while activations are freed), the batch.

The step's peak is the larger of (1) the end of the forward pass: state without gradients,
every saved activation and the largest forward temporary (the pixel target's patchified
copy of the video and its normalisation's copies, or the patch embedding's all-token
output), and (2) the end of backward: state with every gradient and the larger of the patch
embedding's all-token gradient and, under checkpointing, one recomputed block.

Not counted: convolution workspaces (the CPU's 3-D convolution unfolds the video in
backward; cuDNN's vary), the CUDA context and allocator fragmentation (the planner keeps
headroom for them), data-loader buffers in other processes, DDP's gradient buckets.
"""
from __future__ import annotations

import dataclasses
from typing import Literal, get_args

from torch import nn

Precision = Literal["fp32", "bf16"]
Attention = Literal["flash", "dense"]

GIB = 2**30
FLOAT32_BYTES = 4
INDEX_BYTES = 8                      # torch.long
_COMPUTE_BYTES = {"fp32": 4, "bf16": 2}
_ADAMW_MOMENTS = 2                   # exp_avg, exp_avg_sq (float32, like the weights)
_NORMS_PER_BLOCK = 2
_NORM_STATS = 2                      # mean, rstd per token (float32)
_QKV = 3
_NORMALISE_COPIES = 3                # norm-pix target: patches, patches − mean, the result
_BACKWARD_PASS_FLOPS = 2             # backward ≈ 2× forward (input and weight gradients)


@dataclasses.dataclass(frozen=True)
class Stack:
    """A stack of identical pre-norm blocks run on ``tokens`` tokens per clip."""

    blocks: int
    tokens: int
    dim: int
    hidden: int
    heads: int


@dataclasses.dataclass(frozen=True)
class StepShape:
    """What one training step processes per clip, read from a built model (meta is fine)."""

    params: int
    matmul_params: int                 # weights of linears/convs (bf16 autocast copies them)
    buffer_bytes: int                  # fixed position tables and other buffers
    video_elements: int
    grid_tokens: int                   # n
    encoder: Stack                     # on k tokens
    decoder: Stack                     # on k + q tokens
    encoder_tokens: int                # k
    decoder_targets: int               # q
    target_channels: int               # c
    pixel_targets: bool                # the target patchifies the video on the hot path
    forward_flops: int                 # matmul FLOPs of one clip's forward

    @property
    def step_flops(self) -> int:
        """Matmul FLOPs of one clip's training step (forward + backward)."""
        return (1 + _BACKWARD_PASS_FLOPS) * self.forward_flops


def _stack(blocks: nn.ModuleList, tokens: int) -> Stack:
    first = blocks[0]
    return Stack(len(blocks), tokens, first.norm1.normalized_shape[0], first.mlp[0].out_features,
                 first.attn.heads)


def step_shape(model: nn.Module, encoder_tokens: int, decoder_targets: int) -> StepShape:
    """The shape of a ``model.mae`` step with ``encoder_tokens`` kept and ``decoder_targets``
    decoded per clip (a model on the meta device is enough)."""
    encoder, decoder = model.encoder, model.decoder
    grid = encoder.grid
    tt, ph, pw = encoder.tubelet
    params = sum(p.numel() for p in model.parameters() if p.requires_grad)
    matmul = sum(m.weight.numel() for m in model.modules()
                 if isinstance(m, (nn.Linear, nn.Conv3d)) and m.weight.requires_grad)
    return StepShape(
        params=params, matmul_params=matmul,
        buffer_bytes=sum(b.numel() * b.element_size() for b in model.buffers()),
        video_elements=encoder.in_channels * grid.t * tt * grid.h * ph * grid.w * pw,
        grid_tokens=grid.n, encoder=_stack(encoder.blocks, encoder_tokens),
        decoder=_stack(decoder.blocks, encoder_tokens + decoder_targets),
        encoder_tokens=encoder_tokens, decoder_targets=decoder_targets,
        target_channels=decoder.head.out_features,
        pixel_targets=getattr(model.target, "term", "") == "pixels",
        forward_flops=model.flops(encoder_tokens, decoder_targets))


def _norm_input_bytes(precision: Precision, device_type: str) -> int:
    """CUDA autocast runs layer_norm in float32 (it saves a float32 copy of its input); the
    CPU's autocast leaves it in bf16."""
    return FLOAT32_BYTES if device_type == "cuda" else _COMPUTE_BYTES[precision]


def block_bytes(stack: Stack, precision: Precision, attention: Attention, device_type: str = "cuda") -> int:
    """Bytes one block of ``stack`` saves for backward, per clip."""
    compute = _COMPUTE_BYTES[precision]
    d, h, n = stack.dim, stack.hidden, stack.tokens
    per_token = (_NORMS_PER_BLOCK * d * _norm_input_bytes(precision, device_type)   # norm inputs
                 + (_NORMS_PER_BLOCK + _QKV + 1) * d * compute + 2 * h * compute
                 + _NORMS_PER_BLOCK * _NORM_STATS * FLOAT32_BYTES + stack.heads * FLOAT32_BYTES)
    if attention == "dense":
        per_token += stack.heads * n * compute                             # probabilities
    return n * per_token


def _stack_bytes(stack: Stack, precision: Precision, attention: Attention, checkpointing: bool,
                 device_type: str) -> int:
    if checkpointing:           # the block inputs only (the residual stream's dtype)
        return stack.blocks * stack.tokens * stack.dim * _COMPUTE_BYTES[precision]
    return stack.blocks * block_bytes(stack, precision, attention, device_type)


@dataclasses.dataclass(frozen=True)
class StepMemory:
    """Bytes of one training step at a batch size (see the module docstring)."""

    weights: float
    buffers: float
    optimizer: float
    gradients: float
    weight_casts: float
    batch: float
    activations: float
    forward_temporary: float
    backward_temporary: float

    @property
    def at_forward_end(self) -> float:
        return (self.weights + self.buffers + self.optimizer + self.weight_casts + self.batch
                + self.activations + self.forward_temporary)

    @property
    def at_backward_end(self) -> float:
        return (self.weights + self.buffers + self.optimizer + self.gradients + self.batch
                + self.backward_temporary)

    @property
    def peak(self) -> float:
        return max(self.at_forward_end, self.at_backward_end)

    def gib(self) -> dict[str, float]:
        fields = {f.name: getattr(self, f.name) / GIB for f in dataclasses.fields(self)}
        return fields | {"peak": self.peak / GIB}


def step_memory(shape: StepShape, batch_size: int, precision: Precision = "bf16",
                attention: Attention = "flash", checkpointing: bool = False,
                device_type: str = "cuda") -> StepMemory:
    """Memory of one training step of ``batch_size`` clips on ``device_type`` (``cuda`` or
    ``cpu``: their bf16 autocast policies differ for layer_norm)."""
    if precision not in get_args(Precision):
        raise ValueError(f"precision must be one of {get_args(Precision)}, got {precision!r}")
    if attention not in get_args(Attention):
        raise ValueError(f"attention must be one of {get_args(Attention)}, got {attention!r}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be ≥ 1, got {batch_size}")
    if device_type not in ("cuda", "cpu"):
        raise ValueError(f"device_type must be 'cuda' or 'cpu', got {device_type!r}")
    norm_input = _norm_input_bytes(precision, device_type)
    compute = _COMPUTE_BYTES[precision]
    autocast = precision != "fp32"
    k, q, c = shape.encoder_tokens, shape.decoder_targets, shape.target_channels
    d, e = shape.encoder.dim, shape.decoder.dim
    stacks = (_stack_bytes(shape.encoder, precision, attention, checkpointing, device_type)
              + _stack_bytes(shape.decoder, precision, attention, checkpointing, device_type))
    around = (k * d * norm_input + k * d * compute                        # encoder norm, decoder proj_in
              + q * e * norm_input + q * e * compute                      # decoder norm, head input
              + q * c * compute + q * c * FLOAT32_BYTES                   # prediction, loss difference
              + (k + q) * INDEX_BYTES * 2                                 # the plan's indices (+ gathers)
              + (shape.video_elements * compute if autocast else 0))      # patch embedding's input
    if not autocast:            # float32: the final norm's input is the last block's whole output
        around += (k + q) * e * FLOAT32_BYTES - q * e * FLOAT32_BYTES
    targets = q * c * FLOAT32_BYTES
    # pixel targets: the patchified video (a copy) and its gather, then the per-patch
    # normalisation's input, centred copy and output (float32)
    pixels = (max(shape.video_elements * FLOAT32_BYTES + targets, _NORMALISE_COPIES * targets)
              if shape.pixel_targets else 0)
    embedded = 2 * shape.grid_tokens * d * compute                        # conv output + positions
    # the patch embedding's gradient: gather's backward scatters into all n tokens
    token_gradient = shape.grid_tokens * d * compute
    recompute = (max(block_bytes(shape.encoder, precision, attention, device_type),
                     block_bytes(shape.decoder, precision, attention, device_type)) if checkpointing else 0)
    return StepMemory(
        weights=shape.params * FLOAT32_BYTES, buffers=shape.buffer_bytes,
        optimizer=shape.params * FLOAT32_BYTES * _ADAMW_MOMENTS,
        gradients=shape.params * FLOAT32_BYTES,
        weight_casts=shape.matmul_params * compute if autocast else 0,
        batch=batch_size * shape.video_elements * FLOAT32_BYTES,
        activations=batch_size * (stacks + around),
        forward_temporary=batch_size * max(pixels, embedded),
        backward_temporary=batch_size * max(token_gradient, recompute))


def step_tflops(shape: StepShape, batch_size: int) -> float:
    """Matmul TFLOPs of one training step of ``batch_size`` clips."""
    return batch_size * shape.step_flops / 1e12
