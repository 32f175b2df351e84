"""A checkpoint into a file system that is too small: refused before writing (free space vs
the estimated size) or, when the write fails anyway, its temporary file removed — one
paragraph naming the folder, the bytes needed and free; the previous checkpoint stays
loadable. The preflight warns when WORKDIR cannot hold the two checkpoints a run keeps."""
from __future__ import annotations

import os

import pytest
import torch
from torch import nn

from lvmae.experiments.engine import checkpoints, disk_space
from lvmae.experiments.engine.run_stopped import RunStopped

WEIGHTS = 4096      # floats in the test state: 16 KiB of tensors


def _state(step: int) -> dict:
    return {"step": step, "model": {"w": torch.full((WEIGHTS,), float(step))}}


def _leftovers(folder) -> list[str]:
    return [name for name in os.listdir(folder) if checkpoints.TEMPORARY_INFIX in name]


def test_a_checkpoint_larger_than_the_free_space_is_refused_before_writing(tmp_path, monkeypatch):
    checkpoints.save_rotating(str(tmp_path), _state(1))
    monkeypatch.setattr(disk_space, "free_bytes", lambda path: 1000)
    with pytest.raises(disk_space.CheckpointSpaceError) as refused:
        checkpoints.save_rotating(str(tmp_path), _state(2))
    message = str(refused.value)
    needed = f"{disk_space.state_bytes(_state(2)):,} bytes"
    assert str(tmp_path) in message and needed in message and "1,000 bytes" in message and "\n" not in message
    assert isinstance(refused.value, RunStopped)           # Sacred prints the paragraph, no traceback
    assert not _leftovers(tmp_path)
    state, path = checkpoints.load_latest(str(tmp_path))
    assert path.endswith("last.pt") and state["step"] == 1


def test_a_write_the_file_system_refuses_removes_its_temporary_file(tmp_path, monkeypatch):
    checkpoints.save_rotating(str(tmp_path), _state(1))
    real_save = torch.save

    def full_disk(obj, path):         # what torch.save's zip writer does when the disk fills
        with open(path, "wb") as handle:
            handle.write(b"\0" * 1000)
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 6658432 vs 6658320")

    monkeypatch.setattr(torch, "save", full_disk)
    with pytest.raises(disk_space.CheckpointSpaceError, match="ran out of space") as failed:
        checkpoints.save_rotating(str(tmp_path), _state(2))
    assert str(tmp_path) in str(failed.value) and "free now" in str(failed.value) and "\n" not in str(failed.value)
    assert not _leftovers(tmp_path)
    monkeypatch.setattr(torch, "save", real_save)
    assert checkpoints.load_latest(str(tmp_path))[0]["step"] == 1
    # a temporary file a killed process left behind goes with the next write
    (tmp_path / "last.pt.tmp-99999").write_bytes(b"partial")
    checkpoints.save_rotating(str(tmp_path), _state(3))
    assert not _leftovers(tmp_path) and checkpoints.load_latest(str(tmp_path))[0]["step"] == 3


def test_preflight_warns_when_workdir_cannot_hold_two_checkpoints(tmp_path, monkeypatch):
    model = nn.Linear(100, 100)
    one = disk_space.model_checkpoint_bytes(model)
    monkeypatch.setattr(disk_space, "free_bytes", lambda path: 2 * one)
    assert disk_space.room_warning(str(tmp_path / "work"), model) is None
    monkeypatch.setattr(disk_space, "free_bytes", lambda path: 2 * one - 1)
    warning = disk_space.room_warning(str(tmp_path / "work"), model)
    assert warning.startswith("warning: WORKDIR") and f"{one:,} bytes" in warning


def test_run_py_preflight_prints_the_warning_and_goes_on(tmp_path, monkeypatch, capsys):
    from lvmae.experiments.commands import command_index
    from lvmae.experiments.engine.preflight import preflight
    monkeypatch.setattr(disk_space, "free_bytes", lambda path: 1000)
    built = preflight("pretrain", ["gin/experiments/tiny_cpu.gin"],
                      ["CLIP_FRAMES = 4", "IMAGE_SIZE = 16", f"WORKDIR = '{tmp_path / 'work'}'"],
                      module=command_index()["pretrain"].module, check_inputs=False)
    assert built                                          # a warning, not a refusal
    err = capsys.readouterr().err
    assert f"preflight: warning: WORKDIR '{tmp_path / 'work'}' has 1,000 bytes (0.0 MiB) free" in err
