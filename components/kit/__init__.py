"""The contract kit: one-line checks that a component honours its kind's contract, and the
preflight that calls every configured component once on an experiment's real shapes.

For plugin authors, in their own pytest::

    from lvmae.components.kit import check_decoder_masking
    def test_contract():
        check_decoder_masking(MyMasking())          # or the registry name, "masking.decoder.mine"

Each ``check_<kind>`` builds nothing heavy, runs the component on small inputs of the shapes
the framework uses and raises ``ContractError`` naming the component (registered name and
module) and what is wrong. ``check_component(name)`` picks the check by the registry kind.

``preflight_components(model, ...)`` is what ``run.py`` runs before a run is recorded: for a
built ``model.mae`` / ``model.classifier`` / ``model.adaptive_tokenizer`` (or any single
component) it calls every configured component once on the model's real token grid with a
dummy batch of the real shapes. It leaves no trace: components with state of their own
(strategies, scorers, targets, tokenizers) run on copies, the global RNG is restored, and no
gradient is recorded.

Axis legend: b batch, C channels, T/H/W pixels, t/h/w token grid, n = t·h·w, k kept by the
encoder, q decoder targets, c target width, d latent/code width, m candidates.

The checks live in ``masking_checks.py`` and ``model_checks.py``, the table by kind and
``check_component`` in ``checks.py``, the preflight in ``preflight.py``; shared pieces in
``support.py``.
"""
from lvmae.components.kit.checks import CHECKS, FACTORY_KINDS, check_component
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
from lvmae.components.kit.preflight import preflight_components
from lvmae.components.kit.support import DEFAULT_BATCH, DEFAULT_GRID, PREFLIGHT_TOKENS
from lvmae.registry import ContractError

__all__ = [
    "CHECKS", "DEFAULT_BATCH", "DEFAULT_GRID", "FACTORY_KINDS", "PREFLIGHT_TOKENS", "ContractError", "check_backbone",
    "check_component", "check_dataset", "check_decoder", "check_decoder_masking", "check_encoder_masking",
    "check_head", "check_quantizer", "check_scorer", "check_target", "check_tokenizer", "check_topk",
    "preflight_components",
]
