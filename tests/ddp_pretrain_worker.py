"""Run by ``torchrun`` from test_core_training.py: pre-trains a tiny MAE with DDP (gloo on
CPU) through ``pretrain_loop`` and saves this rank's final weights to OUT/rank<r>.pt."""
from __future__ import annotations

import os
import sys

import gin
import torch

from lvmae import registry
from lvmae.experiments.commands import load_all
from lvmae.experiments.commands.pretrain import pretrain_loop


def main(out: str, parallel: str, *bindings: str) -> None:
    registry.discover()
    load_all()   # the gin file binds every command's configurables
    gin.parse_config_files_and_bindings(["gin/experiments/tiny_cpu.gin"], list(bindings))
    result = pretrain_loop(None, 0, parallel=parallel)
    state = result["model"].state_dict()
    torch.save({k: v.full_tensor() if hasattr(v, "full_tensor") else v for k, v in state.items()},
               os.path.join(out, f"rank{os.environ['RANK']}.pt"))


if __name__ == "__main__":
    main(*sys.argv[1:])
