"""``run.py export``: each export kind, loads in ``transformers`` with no missing weights, the
round trip back into lvmae, refusals by name with lvmae's own export still written, and input
it refuses. Feature parity on real footage is tests/test_export_parity.py."""
from __future__ import annotations

import json
import os
import re

import numpy as np
import pytest
import torch

from lvmae.components.masking.decoder_all import AllMaskedDecoding
from lvmae.components.masking.plan import MaskPlan
from lvmae.experiments.commands import export as export_command
from lvmae.experiments.engine.checkpoint_model import load_checkpoint_model
from lvmae.experiments.engine.native_export import ExportError, load_export
from tests.export_support import FILES, bindings, footage_manifest, write_checkpoint

transformers = pytest.importorskip("transformers")
# lvmae's fused qkv keeps a k bias that transformers drops (softmax ignores it): outputs agree to
# float rounding, not bit for bit.
TOLERANCE = 1e-5
DECODER_KEYS = ("decoder.", "encoder_to_decoder.", "mask_token")


@pytest.fixture(scope="module")
def footage(tmp_path_factory):
    return footage_manifest(tmp_path_factory.mktemp("footage"))[0]


def _loaded(cls, folder):
    model, info = cls.from_pretrained(folder, output_loading_info=True)
    return model.eval(), set(info["missing_keys"]), set(info["unexpected_keys"])


def _clip(seed: int = 0) -> torch.Tensor:
    return torch.randn(2, 3, 16, 32, 32, generator=torch.Generator().manual_seed(seed))


def test_pretrained_mae_exports_as_videomae_and_round_trips(tmp_path, footage):
    checkpoint = tmp_path / "last.pt"
    write_checkpoint(checkpoint, "pretrain", "pretrain_loop", FILES, bindings(footage))
    folder = tmp_path / "export"
    result = export_command.export(str(checkpoint), str(folder))
    assert result["refused"] == [] and len(result["written"]) == 2, result
    original = load_checkpoint_model(str(checkpoint))[0].model

    pretraining, missing, unexpected = _loaded(transformers.VideoMAEForPreTraining, folder)
    assert not missing and not unexpected
    _, missing, unexpected = _loaded(transformers.VideoMAEModel, folder)
    assert not missing and unexpected and all(key.startswith(DECODER_KEYS) for key in unexpected)
    encoder_only, missing, unexpected = _loaded(transformers.VideoMAEModel, folder / "encoder")
    assert not missing and not unexpected
    config = json.loads((folder / "config.json").read_text())
    assert config["architectures"] == ["VideoMAEForPreTraining"] and config["num_frames"] == 16

    video = _clip()
    plan = MaskPlan.draw(original.encoder.grid, original.encoder_masking, AllMaskedDecoding(), 2,
                         torch.Generator().manual_seed(1))
    with torch.no_grad():
        features = original.encoder(video)
        prediction = original.decoder(original.encoder(video, plan.enc_keep_idx), plan)
        hf_features = encoder_only(video.transpose(1, 2)).last_hidden_state
        hf_logits = pretraining(video.transpose(1, 2), bool_masked_pos=~plan.enc_keep_mask).logits
    assert (features - hf_features).abs().max() < TOLERANCE
    assert (prediction - hf_logits).abs().max() < TOLERANCE

    # export → pretrain_loop.init_from, and → finetune_loop.pretrained (the export folder)
    from lvmae.experiments.commands.pretrain import _init_from_videomae
    from lvmae.experiments.engine.pretrained import load_pretrained_encoder
    from lvmae.experiments.engine.run_folder import resolve_input
    fresh = load_export(str(folder))[0]
    assert all(torch.equal(a, b) for a, b in zip(fresh.state_dict().values(), original.state_dict().values()))
    for parameter in fresh.parameters():
        torch.nn.init.normal_(parameter)
    _init_from_videomae(fresh, str(folder / "model.safetensors"))
    with torch.no_grad():
        assert (fresh.encoder(video) - features).abs().max() < TOLERANCE
        assert (fresh.decoder(fresh.encoder(video, plan.enc_keep_idx), plan) - prediction).abs().max() < TOLERANCE
    for parameter in fresh.encoder.parameters():
        torch.nn.init.normal_(parameter)
    path = resolve_input(str(folder), str(tmp_path), "pretrain", "finetune_loop.pretrained")
    assert load_pretrained_encoder(fresh.encoder, path).source == "transformers"
    with torch.no_grad():
        assert (fresh.encoder(video) - features).abs().max() < TOLERANCE


def test_classifier_exports_with_label_names(tmp_path, footage):
    checkpoint = tmp_path / "last.pt"
    extra = bindings(footage, "backbone.vit_tiny.final_norm = False")
    write_checkpoint(checkpoint, "finetune", "finetune_loop", FILES, extra)
    folder = tmp_path / "export"
    result = export_command.export(str(checkpoint), str(folder))
    assert result["refused"] == [], result
    model, missing, unexpected = _loaded(transformers.VideoMAEForVideoClassification, folder)
    assert not missing and not unexpected
    assert model.config.id2label == {0: "bikes", 1: "bunny"}
    original = load_checkpoint_model(str(checkpoint))[0].model
    video = _clip(2)
    with torch.no_grad():
        logits = original(video)["label"]
        assert (model(video.transpose(1, 2)).logits - logits).abs().max() < TOLERANCE
    card = (folder / "README.md").read_text()
    assert "pipeline_tag: video-classification" in card and "bikes, bunny" in card
    snippet = re.search(r"```python\n(.*?)```", card, re.DOTALL).group(1).replace("'DIR", f"'{folder}")
    scope = {"frames": np.random.default_rng(0).integers(0, 255, (16, 40, 60, 3), dtype=np.uint8)}
    exec(snippet, scope)  # noqa: S102  (the card's own loading code, run as written)
    assert scope["label"] in ("bikes", "bunny")
    assert "finetune_loop.model = @model.classifier" in card and "lvmae 0." in card
    native = json.loads((folder / "lvmae" / "lvmae_config.json").read_text())
    assert native["label_names"] == {"label": ["bikes", "bunny"]} and native["kind"] == "classifier"
    # export → finetune_loop.pretrained: the classifier's encoder starts the next fine-tuning
    from lvmae.experiments.engine.pretrained import load_pretrained_encoder
    fresh = load_export(str(folder))[0]
    for parameter in fresh.encoder.parameters():
        torch.nn.init.normal_(parameter)
    load_pretrained_encoder(fresh.encoder, str(folder / "model.safetensors"))
    with torch.no_grad():
        assert (fresh.encoder(video) - original.encoder(video)).abs().max() < TOLERANCE


def test_multi_head_classifier_exports_each_head(tmp_path):
    heads = {"verb": ["take", "open"], "noun": ["bike", "rabbit", "door"]}
    manifest = footage_manifest(tmp_path / "shards", heads)[0]
    checkpoint = tmp_path / "last.pt"
    write_checkpoint(checkpoint, "finetune", "finetune_loop", FILES,
                     bindings(manifest, "backbone.vit_tiny.final_norm = False"))
    folder = tmp_path / "export"
    result = export_command.export(str(checkpoint), str(folder))
    assert len(result["written"]) == 2 and not result["refused"]
    for head, names in heads.items():
        model, missing, unexpected = _loaded(transformers.VideoMAEForVideoClassification, folder / head)
        assert not missing and not unexpected
        assert [model.config.id2label[i] for i in range(len(names))] == names
    assert not (folder / "config.json").exists()
    os.remove(manifest)          # the data is gone: generic label names, and the card says why
    result = export_command.export(str(checkpoint), str(tmp_path / "unlabelled"))
    assert len(result["written"]) == 2 and "could not be read" in result["notes"][0]
    assert json.loads((tmp_path / "unlabelled" / "noun" / "config.json").read_text())["id2label"]["2"] == "LABEL_2"


def test_what_transformers_lacks_is_refused_by_name_and_lvmae_export_written(tmp_path, footage, capsys):
    # sin-cos 3-D positions: nothing for transformers, exit status 2, lvmae's export reads back
    checkpoint = tmp_path / "positions.pt"
    write_checkpoint(checkpoint, "pretrain", "pretrain_loop", FILES,
                     bindings(footage, "backbone.vit_tiny.positions = 'sincos_3d'"))
    assert export_command.main([str(checkpoint), "--to", str(tmp_path / "positions")]) == 2
    assert "positions='sincos_3d'" in capsys.readouterr().out
    assert not (tmp_path / "positions" / "config.json").exists()
    assert "refused for transformers" in (tmp_path / "positions" / "README.md").read_text()
    model, config = load_export(str(tmp_path / "positions"))
    assert config["kind"] == "mae" and model.encoder.grid.n == 128

    # a decoder of tokenizer latents: the encoder alone, as VideoMAEModel
    checkpoint = tmp_path / "latents.pt"
    write_checkpoint(checkpoint, "pretrain", "pretrain_loop", FILES,
                     bindings(footage, "model.mae.target = @target.tokenizer_latents()"))
    result = export_command.export(str(checkpoint), str(tmp_path / "latents"))
    assert result["written"] == ["VideoMAEModel: DIR"] and "not pixels" in result["refused"][0]
    _, missing, unexpected = _loaded(transformers.VideoMAEModel, tmp_path / "latents")
    assert not missing and not unexpected

    # class-attention pooling: no VideoMAEForVideoClassification
    checkpoint = tmp_path / "attention.pt"
    write_checkpoint(checkpoint, "finetune", "finetune_loop", FILES,
                     bindings(footage, "backbone.vit_tiny.final_norm = False",
                              "model.classifier.head = @head.class_attention"))
    result = export_command.export(str(checkpoint), str(tmp_path / "attention"))
    assert not result["written"] and "ClassAttentionPool" in result["refused"][0]
    assert load_export(str(tmp_path / "attention"))[1]["heads"] == {"label": 2}


def test_tokenizer_and_scorer_export_to_safetensors_and_read_back(tmp_path):
    checkpoint = tmp_path / "last.pt"
    write_checkpoint(checkpoint, "pretrain_tokenizer", "pretrain_tokenizer_loop",
                     ["gin/experiments/tokenizer_tiny_cpu.gin"], [f"OUTPUTS = '{tmp_path}'"])
    folder = tmp_path / "export"
    result = export_command.export(str(checkpoint), str(folder))
    assert result["kind"] == "tokenizer"
    assert {"tokenizer.safetensors", "scorer.safetensors", "lvmae_config.json"} <= set(os.listdir(folder / "lvmae"))
    original = load_checkpoint_model(str(checkpoint))[0].model
    loaded, config = load_export(str(folder))
    video = torch.randn(1, 3, 16, 32, 32, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        for ours, theirs in zip(original.tokenizer.encode(video), loaded.tokenizer.encode(video)):
            assert torch.equal(ours, theirs)
        assert torch.equal(original.scorer(video), loaded.scorer(video))
    assert config["tokenizer_config"] == original.config()


def test_bad_input_is_refused_naming_it(tmp_path, footage, capsys):
    not_a_checkpoint = tmp_path / "notes.pt"
    torch.save({"weights": torch.zeros(1)}, not_a_checkpoint)
    for argv, named in [([str(not_a_checkpoint)], "not an lvmae checkpoint"),
                        ([str(tmp_path / "missing.pt")], "missing.pt"),
                        ([str(tmp_path)], "without last.pt")]:
        with pytest.raises(SystemExit) as stop:
            export_command.main([*argv, "--to", str(tmp_path / "out")])
        assert stop.value.code == 2 and named in capsys.readouterr().err
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "mine.txt").write_text("keep")
    checkpoint = tmp_path / "last.pt"
    write_checkpoint(checkpoint, "pretrain", "pretrain_loop", FILES, bindings(footage))
    for overwrite in ([], ["--overwrite"]):
        with pytest.raises(SystemExit) as stop:
            export_command.main([str(checkpoint), "--to", str(tmp_path / "busy"), *overwrite])
        assert stop.value.code == 2 and "not empty" in capsys.readouterr().err
    assert (tmp_path / "busy" / "mine.txt").read_text() == "keep"
    assert export_command.main([str(checkpoint), "--to", str(tmp_path / "again")]) == 0
    (tmp_path / "again" / "encoder" / "stale.txt").write_text("from before")
    assert export_command.main([str(checkpoint), "--to", str(tmp_path / "again"), "--overwrite"]) == 0
    assert not (tmp_path / "again" / "encoder" / "stale.txt").exists()
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "lvmae_config.json").write_text(json.dumps({"format": "lvmae-export", "version": 1}))
    with pytest.raises(ExportError, match="'kind' is missing"):
        load_export(str(tmp_path / "broken"))
