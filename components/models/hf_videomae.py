"""Weights from and to ``transformers``' VideoMAE (``VideoMAEModel`` / ``VideoMAEForPreTraining``
/ ``VideoMAEForVideoClassification`` state dicts), so a VideoMAE checkpoint already on disk
can start a run. ``transformers`` itself is never imported here.

Differences handled:
- HF has separate ``query``/``key``/``value`` linears with biases on q and v only; we have one
  fused ``qkv``. Importing sets the k bias to 0; exporting drops it — a bias on k adds the same
  constant to every score of a query, which softmax ignores, so outputs are unchanged.
- HF's encoder→decoder projection has no bias: export requires ours to be absent or zero.
- Exact parity also needs the same positions (``positions='sincos_1d'``), LayerNorm epsilons
  (``norm_eps=config.layer_norm_eps``, decoder ``head_norm_eps=1e-5``) and ``final_norm``
  (= not ``use_mean_pooling``): ``hf_build_kwargs`` derives them from a config dict.
- Video layout: HF takes (b, T, C, H, W); we take (b, C, T, H, W).
"""
from __future__ import annotations

import os

import torch

_HF_BLOCK = {
    "layernorm_before": "norm1", "layernorm_after": "norm2",
    "attention.output.dense": "attn.proj",
    "intermediate.dense": "mlp.0", "output.dense": "mlp.2",
}
# transformers ≤ 4.x stored the q/v biases as parameters of the attention module.
_LEGACY_BIAS = {"q_bias": "query.bias", "v_bias": "value.bias"}


def hf_build_kwargs(config: dict) -> dict[str, dict]:
    """A ``VideoMAEConfig.to_dict()`` → keyword arguments for ``VideoViT`` and ``MAEDecoder``."""
    if config.get("hidden_act", "gelu") != "gelu":
        raise ValueError(f"only hidden_act='gelu' is supported, got {config['hidden_act']!r}")
    hidden, mlp = config["hidden_size"], config["intermediate_size"]
    encoder = dict(clip_frames=config["num_frames"], image_size=config["image_size"],
                   tubelet=(config["tubelet_size"], config["patch_size"], config["patch_size"]),
                   dim=hidden, depth=config["num_hidden_layers"], heads=config["num_attention_heads"],
                   mlp_ratio=mlp / hidden, in_channels=config["num_channels"], positions="sincos_1d",
                   norm_eps=config["layer_norm_eps"], final_norm=not config.get("use_mean_pooling", True))
    dec_hidden = config["decoder_hidden_size"]
    decoder = dict(dim=dec_hidden, depth=config["decoder_num_hidden_layers"],
                   heads=config["decoder_num_attention_heads"],
                   mlp_ratio=config["decoder_intermediate_size"] / dec_hidden, positions="sincos_1d",
                   norm_eps=config["layer_norm_eps"], head_norm_eps=1e-5, proj_bias=False)
    return {"encoder": encoder, "decoder": decoder}


def _normalise_legacy(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    out = {}
    for key, value in state.items():
        prefix, _, last = key.rpartition(".")
        out[f"{prefix}.{_LEGACY_BIAS[last]}" if last in _LEGACY_BIAS else key] = value
    return out


def _blocks_from_hf(state: dict, src: str, dst: str, depth: int) -> dict[str, torch.Tensor]:
    out = {}
    for i in range(depth):
        s, d = f"{src}.{i}", f"{dst}.{i}"
        for hf_name, ours in _HF_BLOCK.items():
            out[f"{d}.{ours}.weight"] = state[f"{s}.{hf_name}.weight"]
            out[f"{d}.{ours}.bias"] = state[f"{s}.{hf_name}.bias"]
        attn = f"{s}.attention.attention"
        q_w, k_w, v_w = (state[f"{attn}.{n}.weight"] for n in ("query", "key", "value"))
        q_b = state.get(f"{attn}.query.bias", torch.zeros(q_w.shape[0]))
        v_b = state.get(f"{attn}.value.bias", torch.zeros(v_w.shape[0]))
        out[f"{d}.attn.qkv.weight"] = torch.cat([q_w, k_w, v_w])
        out[f"{d}.attn.qkv.bias"] = torch.cat([q_b, torch.zeros_like(q_b), v_b])
    return out


def _blocks_to_hf(state: dict, src: str, dst: str, depth: int) -> dict[str, torch.Tensor]:
    out = {}
    for i in range(depth):
        s, d = f"{src}.{i}", f"{dst}.{i}"
        for hf_name, ours in _HF_BLOCK.items():
            out[f"{d}.{hf_name}.weight"] = state[f"{s}.{ours}.weight"]
            out[f"{d}.{hf_name}.bias"] = state[f"{s}.{ours}.bias"]
        q_w, k_w, v_w = state[f"{s}.attn.qkv.weight"].chunk(3)
        attn = f"{d}.attention.attention"
        out.update({f"{attn}.query.weight": q_w, f"{attn}.key.weight": k_w, f"{attn}.value.weight": v_w})
        if f"{s}.attn.qkv.bias" in state:
            q_b, _, v_b = state[f"{s}.attn.qkv.bias"].chunk(3)   # k bias: no effect (see above)
            out.update({f"{attn}.query.bias": q_b, f"{attn}.value.bias": v_b})
    return out


def _depth(state: dict, prefix: str) -> int:
    layers = {int(k[len(prefix):].split(".")[1]) for k in state if k.startswith(prefix + ".")}
    return max(layers) + 1 if layers else 0


def encoder_from_hf(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """HF state dict (any VideoMAE head) → ``VideoViT`` state dict."""
    state = _normalise_legacy(state)
    prefix = "videomae." if any(k.startswith("videomae.") for k in state) else ""
    enc = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    if "embeddings.patch_embeddings.projection.weight" not in enc:
        raise KeyError("not a VideoMAE state dict: no 'embeddings.patch_embeddings.projection.weight'"
                       f" under prefix {prefix!r}")
    out = {"patch_embed.weight": enc["embeddings.patch_embeddings.projection.weight"],
           "patch_embed.bias": enc["embeddings.patch_embeddings.projection.bias"]}
    out.update(_blocks_from_hf(enc, "encoder.layer", "blocks", _depth(enc, "encoder.layer")))
    if "layernorm.weight" in enc:
        out["norm.weight"], out["norm.bias"] = enc["layernorm.weight"], enc["layernorm.bias"]
    return out


def mae_from_hf(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``VideoMAEForPreTraining`` state dict → ``model.mae`` state dict (encoder + decoder)."""
    state = _normalise_legacy(state)
    out = {f"encoder.{k}": v for k, v in encoder_from_hf(state).items()}
    out.update({f"decoder.{k}": v for k, v in _blocks_from_hf(
        state, "decoder.decoder_layers", "blocks", _depth(state, "decoder.decoder_layers")).items()})
    out["decoder.proj_in.weight"] = state["encoder_to_decoder.weight"]
    out["decoder.mask_token"] = state["mask_token"]
    for name in ("norm", "head"):
        out[f"decoder.{name}.weight"] = state[f"decoder.{name}.weight"]
        out[f"decoder.{name}.bias"] = state[f"decoder.{name}.bias"]
    return out


def mae_to_hf(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``model.mae`` state dict → ``VideoMAEForPreTraining`` state dict."""
    enc = {k[len("encoder."):]: v for k, v in state.items() if k.startswith("encoder.")}
    dec = {k[len("decoder."):]: v for k, v in state.items() if k.startswith("decoder.")}
    out = {"videomae.embeddings.patch_embeddings.projection.weight": enc["patch_embed.weight"],
           "videomae.embeddings.patch_embeddings.projection.bias": enc["patch_embed.bias"]}
    out.update(_blocks_to_hf(enc, "blocks", "videomae.encoder.layer", _depth(enc, "blocks")))
    if "norm.weight" in enc:
        out["videomae.layernorm.weight"], out["videomae.layernorm.bias"] = enc["norm.weight"], enc["norm.bias"]
    out.update(_blocks_to_hf(dec, "blocks", "decoder.decoder_layers", _depth(dec, "blocks")))
    if "proj_in.bias" in dec and dec["proj_in.bias"].abs().max() > 0:
        raise ValueError("decoder.proj_in has a non-zero bias, which transformers' VideoMAE "
                         "cannot hold; build the decoder with proj_bias=False")
    out["encoder_to_decoder.weight"] = dec["proj_in.weight"]
    out["mask_token"] = dec["mask_token"]
    for name in ("norm", "head"):
        out[f"decoder.{name}.weight"], out[f"decoder.{name}.bias"] = dec[f"{name}.weight"], dec[f"{name}.bias"]
    return out


def load_hf_checkpoint(path: str) -> dict[str, torch.Tensor]:
    """Reads a ``pytorch_model.bin`` (weights only) or ``model.safetensors`` file, or the
    ``model.safetensors`` of a ``transformers`` model folder."""
    if os.path.isdir(path):
        path = os.path.join(path, "model.safetensors")
    if path.endswith(".safetensors"):
        from safetensors.torch import load_file  # optional: comes with transformers
        return load_file(path)
    state = torch.load(path, map_location="cpu", weights_only=True)
    return state.get("model", state) if isinstance(state, dict) else state
