"""``run.py export`` as a user runs it: pre-train (1 step, parity mode, real footage) → export the
run by its id → the model card holds the run's metrics, gin config, data and lvmae version →
``transformers`` loads the folder; a second export into it is refused. (Fine-tuning from an
export folder: tests/test_export.py, through the functions ``finetune_loop`` calls.)"""
from __future__ import annotations

import pytest

from tests.cli import run_cli
from tests.export_support import FILES, footage_manifest

pytestmark = pytest.mark.slow
transformers = pytest.importorskip("transformers")


def test_pretrain_then_export_the_run_by_its_id(tmp_path):
    manifest = footage_manifest(tmp_path / "shards")[0]
    runs, work, folder = tmp_path / "runs", tmp_path / "work", tmp_path / "export"
    files = [arg for path in FILES for arg in ("-g", path)]
    common = [*files, "-b", f"MANIFEST='{manifest}'", "-b", f"WORKDIR='{work}'", "-b", "data_pipeline.workers=0",
              "-b", "data_pipeline.stride=2"]
    env = {"LVMAE_OBSERVER": "file"}
    pretrain = run_cli(["pretrain", *common, "-b", "pretrain_loop.steps=1", "-b", "pretrain_loop.batch_size=2"],
                       runs, env=env)
    assert pretrain.returncode == 0, pretrain.stderr[-3000:]

    exported = run_cli(["export", "1", "--to", str(folder)], runs, env=env)
    assert exported.returncode == 0, exported.stderr[-3000:]
    assert "transformers VideoMAEForPreTraining: DIR" in exported.stdout
    card = (folder / "README.md").read_text()
    for expected in ("| train/loss | 1 |", "Run status COMPLETED", "pretrain_loop.model = @model.mae()",
                     f'"%MANIFEST": "{manifest}"', "with lvmae 0.", "library_name: transformers"):
        assert expected in card, expected
    _, info = transformers.VideoMAEForPreTraining.from_pretrained(folder, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"]

    again = run_cli(["export", "1", "--to", str(folder)], runs, env=env)
    assert again.returncode == 2 and "not empty" in again.stderr
