"""Checkpoints (safetensors + JSON config) and the ONNX vocoder's parity with torch."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from engine.model.checkpoint import load_checkpoint, load_model, resolve_device, save_checkpoint
from engine.model.config import ModelConfigError, preset
from engine.model.model import SpeechModel
from engine.model.onnx_vocoder import OnnxVocoder, export_vocoder


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[SpeechModel, Path]:
    cfg = preset("tiny")
    cfg.seed = 7  # different weights from the preset's random init
    model = SpeechModel(cfg)
    return model, save_checkpoint(model, tmp_path_factory.mktemp("ckpt") / "tiny7")


def test_a_saved_checkpoint_loads_to_the_same_model(trained: tuple[SpeechModel, Path]) -> None:
    model, path = trained
    loaded = load_model(str(path))
    assert loaded.cfg == model.cfg
    codes = torch.randint(0, 256, (1, 3, 4))
    assert torch.equal(loaded.vocode(codes)[0], model.vocode(codes)[0])
    assert not torch.equal(load_model("tiny").vocode(codes)[0], model.vocode(codes)[0])


def _copy(path: Path, dest: Path) -> Path:
    dest.mkdir()
    for f in path.iterdir():
        (dest / f.name).write_bytes(f.read_bytes())
    return dest


def test_a_checkpoint_that_does_not_fit_its_config_names_the_tensor(trained: tuple[SpeechModel, Path],
                                                                   tmp_path: Path) -> None:
    _, path = trained
    bad = _copy(path, tmp_path / "wider")
    cfg = json.loads((bad / "config.json").read_text())
    cfg["lm"]["ffn_dim"] = 512
    (bad / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ModelConfigError, match=r"tensor 'lm\.blocks\.0\.mlp\.0\.weight' has shape \(256, 128\), "
                                               r"config 'tiny' needs \(512, 128\)"):
        load_checkpoint(bad)
    deeper = _copy(path, tmp_path / "deeper")
    cfg["lm"]["ffn_dim"], cfg["lm"]["layers"] = 256, 3
    (deeper / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ModelConfigError, match=r"tensor 'lm\.blocks\.2\..*' missing"):
        load_checkpoint(deeper)


def test_unreadable_or_missing_checkpoints_are_clear_errors(trained: tuple[SpeechModel, Path], tmp_path: Path) -> None:
    with pytest.raises(ModelConfigError, match="no such checkpoint directory"):
        load_model(str(tmp_path / "nowhere"))
    broken = _copy(trained[1], tmp_path / "broken")
    (broken / "model.safetensors").write_bytes(b"\x00" * 64)
    with pytest.raises(ModelConfigError, match="not a readable safetensors file"):
        load_checkpoint(broken)
    (broken / "model.safetensors").unlink()
    with pytest.raises(ModelConfigError, match="missing weights file"):
        load_checkpoint(broken)
    with pytest.raises(ModelConfigError, match="unknown device"):
        resolve_device("tpu")


def test_onnx_vocoder_matches_torch_step_by_step(trained: tuple[SpeechModel, Path], tmp_path: Path) -> None:
    model, _ = trained
    onnx = OnnxVocoder(export_vocoder(model, tmp_path / "vocoder.onnx"))
    batch, frames = 3, 8  # a batch other than the one exported with: the batch axis is dynamic
    codes = torch.randint(0, model.cfg.encoder.codebook_size, (batch, frames, model.cfg.encoder.n_codebooks))
    t_state, o_state = model.init_state(batch).voc, onnx.init_state(batch)
    ours, theirs = [], []
    for i in range(frames):
        pcm, t_state = model.vocode(codes[:, i : i + 1], t_state)
        ours.append(pcm.detach().numpy())
        out, o_state = onnx.step(codes[:, i : i + 1].numpy(), o_state)
        theirs.append(out)
    a, b = np.concatenate(ours, 1), np.concatenate(theirs, 1)
    assert a.std() > 0.01
    assert np.abs(a - b).max() < 1e-4 * max(1.0, float(np.abs(a).max()))
    with pytest.raises(ValueError, match="codes must be"):
        onnx.step(codes[:, :2].numpy(), o_state)


def test_a_corrupt_onnx_file_is_a_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a model")
    with pytest.raises(ValueError, match="cannot load ONNX vocoder"):
        OnnxVocoder(bad)
