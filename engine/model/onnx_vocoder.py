"""The vocoder's streaming step exported to ONNX and run through onnxruntime (CPU provider).

The exported graph is one step: `codes [B, 1, n_q]` plus every state tensor in, PCM plus the
updated states out (inputs `state_i`, outputs `pcm`, `next_state_i`); the batch is dynamic.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from engine.model.model import SpeechModel


class _VocoderStep(nn.Module):
    def __init__(self, model: SpeechModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, codes: Tensor, *states: Tensor) -> tuple[Tensor, ...]:
        pcm, new = self.model.vocode(codes, list(states))
        return (pcm, *new)


def export_vocoder(model: SpeechModel, path: str | Path, batch: int = 2) -> Path:
    """Write the vocoder step as ONNX (float32, CPU) to `path`."""
    cpu = SpeechModel(model.cfg)
    cpu.load_state_dict({k: v.detach().float().cpu() for k, v in model.state_dict().items()})
    step = _VocoderStep(cpu).eval()
    states = cpu.init_state(batch).voc
    codes = torch.zeros(batch, 1, model.cfg.encoder.n_codebooks, dtype=torch.long)
    names = [f"state_{i}" for i in range(len(states))]
    outs = ["pcm"] + [f"next_state_{i}" for i in range(len(states))]
    axes = {n: {0: "batch"} for n in ["codes", *names, *outs]}
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(step, (codes, *states), str(out), input_names=["codes", *names], output_names=outs,
                          dynamic_axes=axes, opset_version=17, dynamo=False)
    return out


class OnnxVocoder:
    """Runs an exported vocoder step; state is a list of float32 arrays with the batch first."""

    def __init__(self, path: str | Path, threads: int = 1) -> None:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own exception types for bad files
            raise ValueError(f"{path}: cannot load ONNX vocoder: {exc}") from exc
        self.inputs = self.session.get_inputs()
        self.state_names = [i.name for i in self.inputs[1:]]

    def init_state(self, batch: int) -> list[np.ndarray]:
        return [np.zeros([batch, *i.shape[1:]], np.float32) for i in self.inputs[1:]]

    def step(self, codes: np.ndarray, state: list[np.ndarray]) -> tuple[np.ndarray, list[np.ndarray]]:
        if codes.ndim != 3 or codes.shape[1] != 1:
            raise ValueError(f"codes must be [batch, 1, n_q], got {list(codes.shape)}")
        feeds = {"codes": codes.astype(np.int64), **dict(zip(self.state_names, state))}
        out = self.session.run(None, feeds)
        return out[0], list(out[1:])
