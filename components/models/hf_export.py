"""lvmae modules → ``transformers`` VideoMAE: configs, state dicts, and what cannot be represented.

``transformers`` is never imported here: the config is written as the ``config.json`` that
``VideoMAEConfig`` reads, the weights as the state dict its models hold. What the peer cannot
hold is refused by raising :class:`NotRepresentable`, whose message names the lvmae setting and
what ``transformers`` has instead, so the caller can still write lvmae's own export.

What ``transformers``' VideoMAE (5.x) is, and so what an lvmae module must be to become one:
- positions: a fixed 1-D sin-cos table over the flattened token index, in encoder and decoder
  alike (``positions='sincos_1d'``; ``sincos_3d`` and ``learned`` have no counterpart);
- one LayerNorm epsilon (``layer_norm_eps``) for every block norm of encoder and decoder and the
  encoder's final norm; PyTorch's default 1e-5 for the decoder's head norm and ``fc_norm``;
- square patches and frames, exact-GELU MLPs of an integer width, q/v biases (the k bias an lvmae
  ``qkv`` may carry is dropped: it adds one constant to every score of a query, which softmax
  ignores), an encoder→decoder projection without bias, a decoder that predicts pixels
  (C·pt·p·p per token, in ``patchify``'s (pt ph pw c) order);
- ``use_mean_pooling``: True ⇒ no final encoder LayerNorm and, for classification, mean over
  tokens → ``fc_norm`` → linear (lvmae's ``head.mean_linear``); False ⇒ a final LayerNorm.
"""
from __future__ import annotations

import torch
from torch import nn

from lvmae.components.backbones.heads import MeanPoolLinear
from lvmae.components.backbones.positions import sincos_interleaved
from lvmae.components.backbones.vit import VideoViT
from lvmae.components.models.hf_videomae import _blocks_to_hf, mae_to_hf

MODEL_TYPE = "videomae"
PRETRAINING, ENCODER, CLASSIFICATION = "VideoMAEForPreTraining", "VideoMAEModel", "VideoMAEForVideoClassification"
# nn.LayerNorm's default, which transformers' decoder head norm and fc_norm use.
TORCH_LAYER_NORM_EPS = 1e-5
# PIL's bilinear filter code, as transformers' image processors store ``resample``.
PIL_BILINEAR = 2
PIXEL_SCALE = 1 / 255


class NotRepresentable(ValueError):
    """``transformers`` cannot hold this part of the model; the message names the setting."""


def position_kind(module: nn.Module, n: int, dim: int) -> str:
    """``learned``, ``sincos_1d`` (VideoMAE's table) or ``sincos_3d``, from the module's ``pos_embed``."""
    table = module.pos_embed
    if isinstance(table, nn.Parameter):
        return "learned"
    return "sincos_1d" if torch.equal(table[0].float().cpu(), sincos_interleaved(n, dim)) else "sincos_3d"


def _eps(norms: list[nn.Module], owner: str) -> float:
    values = {float(norm.eps) for norm in norms}
    if len(values) != 1:
        raise NotRepresentable(f"{owner} mixes LayerNorm epsilons {sorted(values)}; transformers' VideoMAE "
                               "has one layer_norm_eps")
    return values.pop()


def encoder_config(encoder: VideoViT) -> dict:
    """The ``VideoMAEConfig`` entries of ``encoder``; raises NotRepresentable."""
    if not isinstance(encoder, VideoViT):
        raise NotRepresentable(f"the encoder is a {type(encoder).__name__}, not backbone.vit: transformers' "
                               "VideoMAE is a ViT")
    positions = position_kind(encoder, encoder.grid.n, encoder.dim)
    if positions != "sincos_1d":
        raise NotRepresentable(f"backbone positions={positions!r}: transformers' VideoMAE has only a fixed 1-D "
                               "sin-cos table over the flattened token index (bind the backbone's "
                               "positions='sincos_1d', lvmae's parity mode)")
    tt, ph, pw = encoder.tubelet
    if ph != pw or encoder.grid.h != encoder.grid.w:
        raise NotRepresentable(f"tubelet {encoder.tubelet} on a {encoder.grid} grid: transformers' VideoMAE "
                               "takes square patches of square frames")
    block = encoder.blocks[0]
    hidden = block.mlp[0].out_features
    final_norm = isinstance(encoder.norm, nn.LayerNorm)
    norms = [n for b in encoder.blocks for n in (b.norm1, b.norm2)] + ([encoder.norm] if final_norm else [])
    return {"model_type": MODEL_TYPE, "image_size": encoder.grid.h * ph, "patch_size": ph,
            "num_channels": encoder.in_channels, "num_frames": encoder.grid.t * tt, "tubelet_size": tt,
            "hidden_size": encoder.dim, "num_hidden_layers": len(encoder.blocks),
            "num_attention_heads": block.attn.heads, "intermediate_size": hidden, "hidden_act": "gelu",
            "hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0,
            "layer_norm_eps": _eps(norms, "the encoder"), "qv_bias": block.attn.qkv.bias is not None,
            "use_mean_pooling": not final_norm}


def decoder_config(decoder: nn.Module, encoder: VideoViT, target: nn.Module, config: dict) -> dict:
    """The decoder's ``VideoMAEConfig`` entries (given the encoder's ``config``); raises
    NotRepresentable naming the decoder or target setting that transformers lacks."""
    from lvmae.components.backbones.mae_decoder import MAEDecoder
    from lvmae.components.targets.pixels import PixelTarget
    if not isinstance(decoder, MAEDecoder):
        raise NotRepresentable(f"the decoder is a {type(decoder).__name__}, not decoder.mae")
    if not isinstance(target, PixelTarget):
        raise NotRepresentable(f"the decoder predicts {type(target).__name__} ({decoder.head.out_features} "
                               "channels per token), not pixels: transformers' VideoMAEForPreTraining "
                               "decodes pixels only")
    positions = position_kind(decoder, encoder.grid.n, decoder.dim)
    if positions != "sincos_1d":
        raise NotRepresentable(f"decoder positions={positions!r}: transformers' VideoMAE decoder has only the "
                               "fixed 1-D sin-cos table (bind decoder.mae.positions='sincos_1d')")
    block_eps = _eps([n for b in decoder.blocks for n in (b.norm1, b.norm2)], "the decoder")
    if block_eps != config["layer_norm_eps"]:
        raise NotRepresentable(f"decoder.mae.norm_eps={block_eps:g} differs from the encoder's "
                               f"{config['layer_norm_eps']:g}: transformers' VideoMAE has one layer_norm_eps")
    if float(decoder.norm.eps) != TORCH_LAYER_NORM_EPS:
        raise NotRepresentable(f"decoder.mae.head_norm_eps={decoder.norm.eps:g}: transformers' decoder norm "
                               f"uses {TORCH_LAYER_NORM_EPS:g}")
    if (decoder.blocks[0].attn.qkv.bias is not None) != config["qv_bias"]:
        raise NotRepresentable("decoder.mae.qkv_bias differs from the encoder's: transformers' VideoMAE has "
                               "one qv_bias")
    if decoder.proj_in.bias is not None and decoder.proj_in.bias.abs().max() > 0:
        raise NotRepresentable("decoder.mae.proj_bias: transformers' encoder_to_decoder has no bias")
    return {"decoder_hidden_size": decoder.dim, "decoder_num_hidden_layers": len(decoder.blocks),
            "decoder_num_attention_heads": decoder.blocks[0].attn.heads,
            "decoder_intermediate_size": decoder.blocks[0].mlp[0].out_features,
            # transformers normalises targets per patch and channel; lvmae's "patch" over all
            # channels at once, "none" regresses normalised pixels (the card says which).
            "norm_pix_loss": target.norm_pix != "none"}


def classifier_config(classifier: nn.Module, head: str, config: dict) -> dict:
    """The classification entries for one of ``classifier.heads``; raises NotRepresentable."""
    module = classifier.heads[head]
    if not isinstance(module, MeanPoolLinear):
        raise NotRepresentable(f"head {head!r} is a {type(module).__name__}: transformers' "
                               "VideoMAEForVideoClassification pools by mean → LayerNorm → linear "
                               "(head.mean_linear) only")
    if not config["use_mean_pooling"]:
        raise NotRepresentable("the encoder ends in a LayerNorm (backbone final_norm=True) before the head's "
                               "mean pooling: transformers' VideoMAEForVideoClassification drops that norm "
                               "when it mean-pools (bind the backbone's final_norm=False)")
    if float(module.norm.eps) != TORCH_LAYER_NORM_EPS:
        raise NotRepresentable(f"head {head!r} LayerNorm eps {module.norm.eps:g}: transformers' fc_norm uses "
                               f"{TORCH_LAYER_NORM_EPS:g}")
    return {"num_labels": module.fc.out_features}


def _persistent(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}


def encoder_state(encoder: VideoViT, prefix: str = "") -> dict[str, torch.Tensor]:
    """``VideoViT`` → ``VideoMAEModel`` weights (``prefix`` ``videomae.`` inside a task model)."""
    state = _persistent(encoder)
    out = {f"{prefix}embeddings.patch_embeddings.projection.weight": state["patch_embed.weight"],
           f"{prefix}embeddings.patch_embeddings.projection.bias": state["patch_embed.bias"]}
    out.update(_blocks_to_hf(state, "blocks", f"{prefix}encoder.layer", len(encoder.blocks)))
    if "norm.weight" in state:
        out[f"{prefix}layernorm.weight"], out[f"{prefix}layernorm.bias"] = state["norm.weight"], state["norm.bias"]
    return out


def pretraining_state(mae: nn.Module) -> dict[str, torch.Tensor]:
    """``model.mae`` → ``VideoMAEForPreTraining`` weights."""
    state = {k: v for k, v in _persistent(mae).items() if k.startswith(("encoder.", "decoder."))}
    return {k: v.contiguous() for k, v in mae_to_hf(state).items()}


def classification_state(classifier: nn.Module, head: str) -> dict[str, torch.Tensor]:
    """``model.classifier`` with a ``head.mean_linear`` head → ``VideoMAEForVideoClassification`` weights."""
    out = encoder_state(classifier.encoder, "videomae.")
    module = classifier.heads[head]
    out.update({"fc_norm.weight": module.norm.weight, "fc_norm.bias": module.norm.bias,
                "classifier.weight": module.fc.weight, "classifier.bias": module.fc.bias})
    return {k: v.detach().cpu().contiguous() for k, v in out.items()}


def processor_config(preprocessing: dict) -> dict:
    """The ``preprocessor_config.json`` of ``VideoMAEImageProcessor`` for lvmae's evaluation view
    (short side → ``resize``, centred ``size`` square, x/255, (x − mean)/std), with the frame
    sampling (which the image processor does not do) kept under ``lvmae_frame_sampling``."""
    return {"image_processor_type": "VideoMAEImageProcessor", "do_resize": True,
            "size": {"shortest_edge": preprocessing["resize"]}, "resample": PIL_BILINEAR,
            "do_center_crop": True, "crop_size": {"height": preprocessing["size"], "width": preprocessing["size"]},
            "do_rescale": True, "rescale_factor": PIXEL_SCALE, "do_normalize": True,
            "image_mean": list(preprocessing["mean"]), "image_std": list(preprocessing["std"]),
            "lvmae_frame_sampling": preprocessing["frame_sampling"]}
