"""Shared training pieces: optimizer, warm-up + cosine schedule, atomic checkpoints, logging."""
from __future__ import annotations

import math
import os
import time

import torch
from torch import nn
from tqdm import tqdm


def build_optimizer(model: nn.Module, lr: float, weight_decay: float,
                    betas: tuple[float, float] = (0.9, 0.95)) -> torch.optim.AdamW:
    """AdamW without weight decay on biases, norms and other 1-D parameters."""
    decay, no_decay = [], []
    for parameter in model.parameters():
        if parameter.requires_grad:
            (no_decay if parameter.ndim <= 1 else decay).append(parameter)
    groups = [{"params": decay, "weight_decay": weight_decay},
              {"params": no_decay, "weight_decay": 0.0}]
    fused = torch.cuda.is_available() and all(p.is_cuda for p in decay + no_decay)
    return torch.optim.AdamW(groups, lr=lr, betas=betas, fused=fused or None)


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


class ScalarLogger:
    """Logs scalars to the Sacred run every ``every`` steps and shows a progress bar."""

    def __init__(self, run, total_steps: int, every: int, description: str):
        if every < 1:
            raise ValueError(f"log_every must be ≥ 1, got {every}")
        self.run = run
        self.every = every
        self.bar = tqdm(total=total_steps, desc=description, dynamic_ncols=True, mininterval=0.5)
        self.history: dict[str, list[tuple[int, float]]] = {}
        self._last_time = time.perf_counter()

    def due(self, step: int) -> bool:
        """True on the first step, every ``every`` steps and never twice for one step."""
        return step == 1 or step % self.every == 0

    def log(self, step: int, **scalars: float) -> None:
        for name, value in scalars.items():
            value = float(value)
            self.history.setdefault(name, []).append((step, value))
            if self.run is not None:
                self.run.log_scalar(name, value, step)
        self.bar.set_postfix({k.split("/")[-1]: f"{v:.4g}" for k, v in scalars.items()}, refresh=False)

    def seconds_since_last(self) -> float:
        now = time.perf_counter()
        elapsed, self._last_time = now - self._last_time, now
        return elapsed

    def close(self) -> None:
        self.bar.close()
