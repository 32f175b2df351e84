"""The pre-training step never waits for the device outside logging steps.

A host-device synchronisation stalls the GPU's queue once per call; in the hot path it costs
a few percent of every step and hides in profiles. Two checks, both on the real
``pretrain_loop``, ``finetune_loop`` and ``pretrain_tokenizer_loop`` (whatever their
internals):

- CPU: every conversion of a tensor to a Python value (``item``, ``float``, ``int``,
  ``bool``, ``index``, ``tolist``) is counted — on a GPU each one is a synchronisation.
- CUDA (skipped without one): ``torch.cuda.set_sync_debug_mode('warn')`` reports every
  synchronising call.

The loop is run for ``SHORT`` and ``LONG`` steps with logging only at step 1 (and the same
end-of-run work: checkpoint, reconstruction picture), so the difference between the two
counts is what ``LONG − SHORT`` non-logging steps did. Host-side data production
(``components/data``, ``torch.utils.data``) is not the step and is left out. A failure lists
the call sites.
"""
from __future__ import annotations

import collections
import contextlib
import inspect
import os
import traceback
import warnings

import pytest
import torch

from lvmae.experiments.engine import gin_config

TINY = "gin/experiments/tiny_cpu.gin"
TOKENIZER = "gin/experiments/lvmae_cpu.gin"
SHORT, LONG = 2, 5
# Python-value conversions of a tensor: each one is a device→host read on a GPU.
_CONVERSIONS = ("item", "__float__", "__int__", "__bool__", "__index__", "tolist")
# Frames from these paths produce data on the host; their conversions are not the step's.
_HOST_SIDE = (os.path.join("components", "data") + os.sep, os.path.join("torch", "utils", "data") + os.sep)
_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _call_site(stack: list[traceback.FrameSummary]) -> str | None:
    """``file:line`` of the innermost frame in this repository (else the innermost frame);
    None for host-side data production."""
    if any(part in frame.filename for frame in stack for part in _HOST_SIDE):
        return None
    own = [f for f in stack if os.path.abspath(f.filename).startswith(_ROOT + os.sep)
           and f".venv{os.sep}" not in f.filename]
    frame = (own or stack)[-1]
    return f"{os.path.relpath(frame.filename, _ROOT)}:{frame.lineno} ({frame.line})"


@contextlib.contextmanager
def counting_host_reads():
    """Counts tensor → Python conversions by call site while active."""
    sites: collections.Counter = collections.Counter()
    originals = {name: getattr(torch.Tensor, name) for name in _CONVERSIONS}

    def wrap(name):
        original = originals[name]

        def counted(self, *args, **kwargs):
            site = _call_site(traceback.extract_stack()[:-1])
            if site is not None:
                sites[f"{name}: {site}"] += 1
            return original(self, *args, **kwargs)
        return counted

    for name in _CONVERSIONS:
        setattr(torch.Tensor, name, wrap(name))
    try:
        yield sites
    finally:
        for name, original in originals.items():
            setattr(torch.Tensor, name, original)


@contextlib.contextmanager
def recording_cuda_syncs():
    """Counts synchronising CUDA calls (``set_sync_debug_mode('warn')``) by call site."""
    sites: collections.Counter = collections.Counter()
    previous = torch.cuda.get_sync_debug_mode()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            yield sites
        finally:
            torch.cuda.set_sync_debug_mode(previous)
    for warning in caught:
        if "synchroniz" in str(warning.message):
            sites[f"{warning.filename}:{warning.lineno}"] += 1


# command → the gin file of its tiny CPU experiment and bindings of its own
EXPERIMENTS = {
    "pretrain": (TINY, []),
    "finetune": (TINY, ["finetune_loop.pretrained = None"]),
    "pretrain_tokenizer": (TOKENIZER, ["pretrain_tokenizer_loop.eval_every = 1000",
                                       "pretrain_tokenizer_loop.checkpoint_every = 1000"]),
}


def _train(command: str, workdir, data, steps: int, device: str) -> None:
    """Runs ``<command>_loop`` of a tiny CPU experiment (logging at step 1 only)."""
    import importlib
    loop = f"{command}_loop"
    function = getattr(importlib.import_module(f"lvmae.experiments.commands.{command}"), loop)
    gin_file, own = EXPERIMENTS[command]
    bindings = ["CLIP_FRAMES = 4", "IMAGE_SIZE = 16", f"WORKDIR = '{workdir}'",
                f"dataset.synthetic_motion.root = '{data}'",
                "dataset.synthetic_motion.square = 4", "dataset.synthetic_motion.train_samples = 32",
                "dataset.synthetic_motion.val_samples = 8", "dataset.synthetic_motion.samples_per_shard = 16",
                f"{loop}.batch_size = 2", f"{loop}.steps = {steps}", f"{loop}.log_every = 1000",
                f"{loop}.warmup_steps = 1", f"{loop}.shuffle_buffer = 4", f"{loop}.device = '{device}'", *own]
    accepted = inspect.signature(getattr(function, "__wrapped__", function)).parameters
    assert {"steps", "log_every", "batch_size"} <= set(accepted), f"{loop} changed its parameters"
    bindings = [b for b in bindings if not b.startswith(f"{loop}.") or b.split(".")[1].split()[0] in accepted]
    gin_config.parse([gin_file], bindings)
    function(None, 0)


@contextlib.contextmanager
def device_mode_contract_checks():
    """Mask-contract value checks read their result on the host for CPU tensors (there is no
    device to wait for) and queue ``torch._assert_async`` on an accelerator: on the CPU,
    check the accelerator's path."""
    from lvmae.components.masking import contract
    original = contract.host_checks
    contract.host_checks = lambda tensor: False
    try:
        yield
    finally:
        contract.host_checks = original


def _per_step_sites(tmp_path, command: str, device: str, recorder) -> dict[str, int]:
    data = tmp_path / "data"
    _train(command, tmp_path / "warm", data, SHORT, device)     # writes the data; warms every path
    counts = {}
    for steps in (SHORT, LONG):
        with recorder() as sites, device_mode_contract_checks():
            _train(command, tmp_path / f"work_{steps}", data, steps, device)
        counts[steps] = sites
    extra = counts[LONG].copy()
    extra.subtract(counts[SHORT])
    return {site: n for site, n in extra.items() if n}


def _report(sites: dict[str, int]) -> str:
    steps = LONG - SHORT
    return (f"{steps} non-logging steps read tensors on the host:\n"
            + "\n".join(f"  {n / steps:g} per step  {site}" for site, n in sorted(sites.items())))


COMMANDS = ["pretrain", "finetune", "pretrain_tokenizer"]


@pytest.mark.parametrize("command", COMMANDS)
def test_no_tensor_becomes_a_python_value_outside_logging_steps(tmp_path, command):
    sites = _per_step_sites(tmp_path, command, "cpu", counting_host_reads)
    assert not sites, _report(sites)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA (set_sync_debug_mode)")
@pytest.mark.parametrize("command", COMMANDS)
def test_no_cuda_synchronisation_outside_logging_steps(tmp_path, command):
    sites = _per_step_sites(tmp_path, command, "cuda", recording_cuda_syncs)
    assert not sites, _report(sites)


def test_the_counter_sees_a_hidden_host_read():
    """The CPU check can fail: a step that branches on a tensor is caught, with its line."""
    loss = torch.tensor(1.0)
    with counting_host_reads() as sites:
        if torch.isfinite(loss):
            pass
        loss.item()
    assert sum(sites.values()) == 2
    assert all("test_step_sync.py" in site for site in sites), sites
