"""Multi-process training with PyTorch's own engines — DDP, or FSDP2 (``fully_shard``) for
large models — and the full (unsharded) state dicts checkpoints hold.

Launch: ``torchrun --nproc_per_node N run.py pretrain ...``. Only rank 0 logs and writes
checkpoints; every rank reads them on resume.
"""
from __future__ import annotations

from typing import Literal, get_args

import torch
from torch import nn

from lvmae.experiments.engine.training import Distributed, unwrap

Parallel = Literal["ddp", "fsdp2"]


def wrap_model(model: nn.Module, info: Distributed, parallel: Parallel) -> nn.Module:
    """DDP or FSDP2 around ``model`` when several processes run; else ``model`` itself."""
    if parallel not in get_args(Parallel):
        raise ValueError(f"pretrain_loop.parallel must be one of {get_args(Parallel)}, got {parallel!r}")
    if not info.enabled:
        return model
    if parallel == "ddp":
        ids = [info.device.index] if info.device.type == "cuda" else None
        return nn.parallel.DistributedDataParallel(model, device_ids=ids)
    from torch.distributed.fsdp import fully_shard
    for module in list(model.modules()):
        if type(module).__name__ == "Block":          # shard per transformer block, then the rest
            fully_shard(module)
    fully_shard(model)
    return model


def _fsdp(model: nn.Module, info: Distributed, parallel: str) -> bool:
    return info.enabled and parallel == "fsdp2"


def full_state(model: nn.Module, optimizer: torch.optim.Optimizer, info: Distributed,
               parallel: str) -> tuple[dict, dict]:
    """(model, optimizer) state dicts, unsharded, on CPU. A collective under FSDP2."""
    if _fsdp(model, info, parallel):
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_state_dict
        return get_state_dict(model, optimizer,
                              options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    return unwrap(model).state_dict(), optimizer.state_dict()


def load_full_state(model: nn.Module, optimizer: torch.optim.Optimizer, model_state: dict,
                    optimizer_state: dict, info: Distributed, parallel: str) -> None:
    if _fsdp(model, info, parallel):
        from torch.distributed.checkpoint.state_dict import StateDictOptions, set_state_dict
        set_state_dict(model, optimizer, model_state_dict=model_state, optim_state_dict=optimizer_state,
                       options=StateDictOptions(full_state_dict=True))
        return
    unwrap(model).load_state_dict(model_state)
    optimizer.load_state_dict(optimizer_state)
