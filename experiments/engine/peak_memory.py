"""Measured peak memory of one call (a training step), on a GPU or on the CPU.

- CUDA: ``torch.cuda.max_memory_allocated`` after a reset (every live tensor counts).
- CPU: PyTorch has no peak counter for its CPU allocator, and the process's resident size
  says little (glibc keeps freed pages, other threads allocate). The profiler's allocation
  events do carry the CPU allocator's running total of the bytes allocated *while
  profiling*: summed in time order, their maximum is the step's peak above what was alive
  before (frees of memory allocated earlier are not reported, so this errs high by at most
  what the step frees of it — the training step frees last step's gradients first: drop
  them before measuring). What was alive
  before is counted exactly from the tensors the step can reach: ``live`` (weights,
  buffers, gradients, optimizer state, the batch; storages shared between them once).
"""
from __future__ import annotations

from collections.abc import Callable, Iterable

import torch


def storage_bytes(tensors: Iterable[torch.Tensor]) -> int:
    """Bytes of the distinct storages behind ``tensors``."""
    seen: dict[int, int] = {}
    for tensor in tensors:
        if torch.is_tensor(tensor) and tensor.device.type != "meta":
            storage = tensor.untyped_storage()
            seen[storage.data_ptr()] = storage.nbytes()
    return sum(seen.values())


def training_state(model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> list[torch.Tensor]:
    """Weights, buffers, gradients and optimizer state of a model being trained."""
    tensors = list(model.parameters()) + list(model.buffers())
    tensors += [p.grad for p in model.parameters() if p.grad is not None]
    tensors += [value for state in optimizer.state.values() for value in state.values() if torch.is_tensor(value)]
    return tensors


def _cpu_peak_above_start(step: Callable[[], object]) -> int:
    from torch._C._profiler import _EventType  # pylint: disable=import-outside-toplevel
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as profiler:
        step()
    changes = []                  # (time, ± bytes) of every CPU allocation and free in the step
    stack = list(profiler.profiler.kineto_results.experimental_event_tree())
    while stack:
        event = stack.pop()
        if event.tag == _EventType.Allocation and event.extra_fields.device.type == "cpu":
            changes.append((event.start_time_ns, event.extra_fields.alloc_size))
        stack.extend(event.children)
    # The allocator's own running total is process-wide and keeps memory allocated during an
    # earlier profile but freed outside it: sum this step's changes instead.
    allocated = peak = 0
    for _, change in sorted(changes):
        allocated += change
        peak = max(peak, allocated)
    return peak


def peak_bytes(step: Callable[[], object], device: torch.device, live: Iterable[torch.Tensor] = ()) -> int:
    """Peak bytes allocated while ``step()`` runs, including what was alive before it.

    ``live``: on the CPU, the tensors alive when the step starts (ignored on a GPU, where
    the allocator knows them).
    """
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        step()
        torch.cuda.synchronize(device)
        return torch.cuda.max_memory_allocated(device)
    if device.type != "cpu":
        raise ValueError(f"peak memory is measured on 'cpu' or 'cuda', got {device}")
    return storage_bytes(live) + _cpu_peak_above_start(step)


def mae_training_step(model: torch.nn.Module, optimizer: torch.optim.Optimizer, batch: dict,
                      generator: torch.Generator, bf16: bool, clip_grad: float = 1.0) -> Callable[[], None]:
    """One pre-training step as ``pretrain_loop`` runs it (the planner's model of a step):
    gradients dropped first, forward under autocast, the prediction held through backward,
    gradient clipping, AdamW."""
    device_type = batch["video"].device.type

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device_type, dtype=torch.bfloat16, enabled=bf16):
            losses, _, prediction = model(batch, generator.manual_seed(0))
        losses["loss"].backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), clip_grad)
        optimizer.step()
        del prediction

    return step
