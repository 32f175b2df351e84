"""Shared training pieces: optimizer, warm-up + cosine schedule, atomic checkpoints, logging,
RNG capture, and process-group set-up for ``torchrun`` (DDP / FSDP2)."""
from __future__ import annotations

import dataclasses
import math
import os
import random
import time

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from tqdm import tqdm

from lvmae.experiments.tracking.scalars import log_scalar

# Devices with a fused AdamW kernel: one kernel per step, and the step count stays a tensor
# (the for-loop implementation reads it with ``.item()`` per parameter: a host read per step).
_FUSED_ADAMW_DEVICES = ("cuda", "cpu")


def build_optimizer(model: nn.Module, lr: float, weight_decay: float,
                    betas: tuple[float, float] = (0.9, 0.95), fused: bool | None = None) -> torch.optim.AdamW:
    """AdamW without weight decay on biases, norms and other 1-D parameters.

    ``fused``: None (default) uses the fused kernel when every parameter is on one device
    type that has it (GPU or CPU); True requires it; False uses PyTorch's default.
    """
    decay, no_decay = [], []
    for parameter in model.parameters():
        if parameter.requires_grad:
            (no_decay if parameter.ndim <= 1 else decay).append(parameter)
    groups = [{"params": decay, "weight_decay": weight_decay},
              {"params": no_decay, "weight_decay": 0.0}]
    if fused is None:
        fused = fused_adamw_supported(decay + no_decay)
    return torch.optim.AdamW(groups, lr=lr, betas=tuple(betas), fused=fused or None)


def fused_adamw_supported(parameters: list[torch.Tensor]) -> bool:
    """Whether every parameter sits on one device type with a fused AdamW kernel."""
    devices = {p.device.type for p in parameters}
    return len(devices) == 1 and devices <= set(_FUSED_ADAMW_DEVICES)


def warmup_cosine(total_steps: int, warmup_steps: int, min_ratio: float = 0.0):
    """LambdaLR factor: linear warm-up to 1, then cosine decay to ``min_ratio``."""
    if warmup_steps < 0 or total_steps <= 0:
        raise ValueError("total_steps must be > 0 and warmup_steps ≥ 0")

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))

    return factor


def save_checkpoint(path: str, state: dict) -> str:
    """Writes ``state`` to ``path`` atomically (temporary file + rename): a crash mid-write
    never leaves a truncated checkpoint under the final name."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    temporary = f"{path}.tmp-{os.getpid()}"
    torch.save(state, temporary)
    os.replace(temporary, path)
    return path


def load_checkpoint(path: str) -> dict:
    if not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint not found: {path!r}")
    return torch.load(path, map_location="cpu", weights_only=True)


def unwrap(model: nn.Module) -> nn.Module:
    """The plain module under DDP (``.module``) and ``torch.compile`` (``._orig_mod``) wrappers,
    so checkpoints never carry ``module.`` / ``_orig_mod.`` prefixes."""
    while True:
        if isinstance(model, nn.parallel.DistributedDataParallel):
            model = model.module
        elif hasattr(model, "_orig_mod"):
            model = model._orig_mod      # pylint: disable=protected-access
        else:
            return model


# ---------------------------------------------------------------- randomness

def rng_state() -> dict:
    """Every global generator this process uses (Python, NumPy, torch CPU and CUDA)."""
    numpy_state = np.random.get_state(legacy=False)
    # tensors and plain types only, so checkpoints load with torch.load(weights_only=True)
    numpy_state["state"]["key"] = torch.from_numpy(numpy_state["state"]["key"].astype(np.int64))
    state = {"python": random.getstate(), "numpy": numpy_state, "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    numpy_state = dict(state["numpy"], state=dict(state["numpy"]["state"]))
    numpy_state["state"]["key"] = numpy_state["state"]["key"].numpy().astype(np.uint32)
    np.random.set_state(numpy_state)
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# The mask generator is re-seeded every step from (seed, rank, step): a resumed run, or a run
# with another world size's rank r, draws exactly the masks it would have drawn, and nothing
# about mask randomness needs to be stored.
_SEED_STRIDE_RANK = 1_000_003
_SEED_STRIDE_RUN = 2_147_483_647


def step_generator(generator: torch.Generator, seed: int, rank: int, step: int) -> torch.Generator:
    return generator.manual_seed((seed * _SEED_STRIDE_RUN + rank * _SEED_STRIDE_RANK + step) % 2**63)


# ---------------------------------------------------------------- processes

@dataclasses.dataclass(frozen=True)
class Distributed:
    """Where this process sits: from ``torchrun``'s environment, or a single process."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")  # noqa: RUF009  (torch.device is immutable)

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def setup_distributed(device: str = "auto") -> Distributed:
    """Joins the process group when launched by ``torchrun`` (NCCL on GPUs, gloo on CPU)."""
    wants_cuda = device == "cuda" or (device == "auto" and torch.cuda.is_available())
    if device not in ("auto", "cuda", "cpu"):
        raise ValueError(f"device must be 'auto', 'cuda' or 'cpu', got {device!r}")
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank, local_rank = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    chosen = torch.device("cuda", local_rank) if wants_cuda else torch.device("cpu")
    if wants_cuda:
        torch.cuda.set_device(chosen)
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if wants_cuda else "gloo")
    return Distributed(rank, world_size, local_rank, chosen)


def mean_across_ranks(value: torch.Tensor, info: Distributed) -> float:
    """The mean of a scalar over all ranks (for logging; a collective on every rank)."""
    if not info.enabled:
        return float(value.detach()) if torch.is_tensor(value) else float(value)
    value = value.detach().float().clone().to(info.device if info.device.type == "cuda" else "cpu")
    dist.all_reduce(value)
    return float(value) / info.world_size


def gather_objects(obj, info: Distributed) -> list:
    """[obj of rank 0, obj of rank 1, …] on every rank."""
    if not info.enabled:
        return [obj]
    gathered = [None] * info.world_size
    dist.all_gather_object(gathered, obj)
    return gathered


# The progress bar shows losses and evaluation; of the efficiency and health groups only these.
BAR_LEAVES_OUT = ("eff/", "health/", "probe/")
BAR_SHOWS = ("eff/clips_per_s", "eff/data_wait_fraction", "health/effective_rank")


class ScalarLogger:
    """Logs scalars to the Sacred run every ``every`` steps and shows a progress bar.

    ``run`` is None on ranks other than 0 (only rank 0 logs); ``initial`` is the step a
    resumed run starts after."""

    def __init__(self, run, total_steps: int, every: int, description: str, initial: int = 0,
                 show: bool = True):
        if every < 1:
            raise ValueError(f"log_every must be ≥ 1, got {every}")
        self.run = run
        self.every = every
        self.total_steps = total_steps
        self.bar = tqdm(total=total_steps, initial=initial, desc=description, dynamic_ncols=True,
                        mininterval=0.5, disable=not show)
        self.history: dict[str, list[tuple[int, float]]] = {}
        self._last_time = time.perf_counter()

    def due(self, step: int) -> bool:
        """True on the first step, every ``every`` steps and the last step (the run's final
        values are the last step's), never twice for one step."""
        return step == 1 or step % self.every == 0 or step == self.total_steps

    def log(self, step: int, **scalars: float) -> None:
        for name, value in scalars.items():
            value = float(value)
            self.history.setdefault(name, []).append((step, value))
            log_scalar(self.run, name, value, step)   # counters go to info, not the plot
        self.bar.set_postfix({k.split("/")[-1]: f"{v:.4g}" for k, v in scalars.items()
                              if not k.startswith(BAR_LEAVES_OUT) or k in BAR_SHOWS}, refresh=False)

    def seconds_since_last(self) -> float:
        now = time.perf_counter()
        elapsed, self._last_time = now - self._last_time, now
        return elapsed

    def close(self) -> None:
        self.bar.close()
