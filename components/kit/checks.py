"""The kit's table of checks by registry kind, and ``check_component`` (a check by registered
name)."""
from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from lvmae import registry
from lvmae.components.kit.masking_checks import check_decoder_masking, check_encoder_masking
from lvmae.components.kit.model_checks import (
    check_backbone,
    check_dataset,
    check_decoder,
    check_head,
    check_quantizer,
    check_scorer,
    check_target,
    check_tokenizer,
    check_topk,
)

CHECKS: dict[str, Callable[..., None]] = {
    "masking.encoder": check_encoder_masking,
    "masking.decoder": check_decoder_masking,
    "scorer": check_scorer,
    "target": check_target,
    "quantizer": check_quantizer,
    "tokenizer": check_tokenizer,
    "backbone": check_backbone,
    "topk": check_topk,
    "dataset": check_dataset,
    "head": check_head,
    "decoder": check_decoder,
}
#: Kinds that gin binds as factories (no parentheses) and a model calls with its own sizes:
#: ``check_component`` hands their factory to the check, which builds it.
FACTORY_KINDS = ("head", "decoder")


def check_component(name: str, **kwargs: Any) -> None:
    """Runs the kit's check for a registered component's kind, building it by name with
    ``kwargs`` (gin bindings apply to the others). lvmae's components and the installed
    plugins are discovered first, so a plain script needs no ``registry.discover()``."""
    registry.discover()
    entry = registry.get(name)
    if entry.kind not in CHECKS:
        raise ValueError(f"the kit has no check for kind {entry.kind!r}; kinds: {', '.join(CHECKS)}")
    if entry.kind in FACTORY_KINDS:
        CHECKS[entry.kind](functools.partial(entry.obj, **kwargs))
    else:
        CHECKS[entry.kind](registry.build(name, **kwargs))
