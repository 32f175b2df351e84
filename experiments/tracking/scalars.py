"""Which logged scalars are metrics (plotted over steps) and which are counters.

Omniboard plots every metric of a run on one linear axis by default: a counter such as
``train/loss_tokens`` (how many tokens the loss averages over — constant for a configuration,
304 for the tiny job) flattens a loss of ~1 into a line at the bottom. Counters therefore go to
the run's info (``info.counters.<name>``: the latest value, with the step it was seen at) and
never to the metrics; everything else is a metric. Training loops log through
:func:`log_scalar`.
"""
from __future__ import annotations

# Name endings of counts (token and sample counts), not of quantities that evolve like a loss.
COUNTER_SUFFIXES = ("_tokens", "_count", "/tokens", "/count")
COUNTERS_INFO_KEY = "counters"


def is_counter(name: str) -> bool:
    return name.endswith(COUNTER_SUFFIXES)


def log_scalar(run, name: str, value: float, step: int) -> None:
    """``run.log_scalar`` for a metric; ``run.info["counters"][name]`` for a counter. ``run``
    may be None (ranks other than 0)."""
    if run is None:
        return
    if is_counter(name):
        run.info.setdefault(COUNTERS_INFO_KEY, {})[name] = {"value": value, "step": step}
    else:
        run.log_scalar(name, value, step)
