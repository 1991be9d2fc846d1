"""Checkpoints: a directory with `config.json` (ModelConfig) and `model.safetensors`.

`load_model(spec)` takes a preset name (`tiny`, `base`: random initialisation from the
config's seed) or a checkpoint directory. Every tensor is checked against the config before
loading, and the first missing, unexpected or mis-shaped tensor is named. Nothing is
downloaded: a path that does not exist is an error.
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from engine.model.config import PRESETS, ModelConfig, ModelConfigError, preset
from engine.model.model import SpeechModel
from engine.model.phonemes import FRONTEND_FILE, Frontend

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"


def save_checkpoint(model: SpeechModel, directory: str | Path) -> Path:
    path = Path(directory)
    path.mkdir(parents=True, exist_ok=True)
    (path / CONFIG_FILE).write_text(model.cfg.to_json())
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    save_file(tensors, str(path / WEIGHTS_FILE), metadata={"config": model.cfg.name})
    return path


def load_checkpoint(directory: str | Path, device: str = "cpu") -> SpeechModel:
    path = Path(directory)
    if not path.is_dir():
        raise ModelConfigError(f"{path}: no such checkpoint directory (expected {CONFIG_FILE} + {WEIGHTS_FILE})")
    cfg = ModelConfig.from_json_file(path / CONFIG_FILE)
    weights = path / WEIGHTS_FILE
    if not weights.is_file():
        raise ModelConfigError(f"{weights}: missing weights file")
    try:
        tensors = load_file(str(weights), device="cpu")
    except (SafetensorError, OSError, ValueError) as exc:
        raise ModelConfigError(f"{weights}: not a readable safetensors file: {exc}") from exc
    model = SpeechModel(cfg)
    expected = model.state_dict()
    missing = sorted(set(expected) - set(tensors))
    if missing:
        raise ModelConfigError(f"{weights}: tensor {missing[0]!r} missing ({len(missing)} missing) for {cfg.name!r}")
    extra = sorted(set(tensors) - set(expected))
    if extra:
        raise ModelConfigError(f"{weights}: unexpected tensor {extra[0]!r} (not in config {cfg.name!r})")
    for name, want in expected.items():
        got = tensors[name]
        if tuple(got.shape) != tuple(want.shape):
            raise ModelConfigError(
                f"{weights}: tensor {name!r} has shape {tuple(got.shape)}, config {cfg.name!r} needs {tuple(want.shape)}"
            )
    model.load_state_dict({k: v.to(expected[k].dtype) for k, v in tensors.items()})
    if (path / FRONTEND_FILE).is_file():
        model.frontend = Frontend.load(path)
    return model.to(device).eval()


def load_model(spec: str, device: str = "cpu") -> SpeechModel:
    """A preset name or a checkpoint directory; raises ModelConfigError with the reason."""
    if spec in PRESETS:
        return SpeechModel(preset(spec)).to(device).eval()
    if not spec:
        raise ModelConfigError("no model given (a preset name or a checkpoint directory)")
    return load_checkpoint(spec, device)


def resolve_device(name: str) -> torch.device:
    if name == "cuda" and not torch.cuda.is_available():
        raise ModelConfigError("device 'cuda' asked for but torch sees no CUDA device")
    if name not in ("cpu", "cuda") and not name.startswith("cuda:"):
        raise ModelConfigError(f"unknown device {name!r} (cpu, cuda, cuda:N)")
    return torch.device(name)
