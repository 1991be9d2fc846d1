"""Model configurations: `tiny` (CPU, tests) and `base` (GPU deployment size), JSON on disk.

The latency/bitrate budget behind these numbers is in engine/model/README.md.
`python -m engine.model.config` prints both presets with their parameter counts.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SAMPLE_RATE = 16_000


class ModelConfigError(ValueError):
    """A config or checkpoint that does not fit: the message names the field or tensor."""


@dataclass
class EncoderConfig:
    channels: list[int] = field(default_factory=lambda: [8, 16, 32, 64])
    strides: list[int] = field(default_factory=lambda: [4, 5, 8, 8])  # product = samples per model frame
    latent_dim: int = 64
    n_codebooks: int = 4
    codebook_size: int = 256


@dataclass
class LMConfig:
    dim: int = 128
    layers: int = 2
    heads: int = 4
    ffn_dim: int = 256
    context: int = 64  # frames in the KV ring: how far back the LM attends (never beyond its training rows)
    text_vocab: int = 258  # bytes + PAD + END
    speaker_dim: int = 64  # = encoder latent_dim (the speaker prompt is pooled encoder latents)
    prosody_dim: int = 4  # rate, pitch, emphasis, pause
    n_events: int = 16  # none, cut-off, resumed, 12 DTMF digits, spare
    # The step vocodes the code embeddings expected under the LM's softmax (per codebook) instead
    # of those of the argmax codes: the codebooks are predicted independently of each other, so
    # a confident first code with uncertain residuals then averages the residuals instead of
    # picking arbitrary ones. The LM shipped then, `bench model --part lm` (20 sentences): WER 61.4 -> 52.6 %
    # (temperature 0.5: 56.6 %, 1.5: 53.5 %, only the residual codebooks soft: 59.2 %). The codes
    # fed back to the LM stay the argmax ones, as it was trained.
    vocode_expected: bool = True


@dataclass
class VocoderConfig:
    dim: int = 64
    blocks: int = 2
    hop: int = 160  # samples per sub-frame (10 ms)
    n_fft: int = 640  # window (40 ms)
    kernel: int = 7
    # False: the head predicts each sub-frame's phases outright (the first shipped codec). A local
    # network cannot know a voice's absolute phase, so on a steady vowel the same codes give the
    # same phases every model frame and the audio repeats every 40 ms (measured: autocorrelation
    # 0.63 at 40 ms against -0.1 for piper; Praat reads 50 Hz for a ~95 Hz voice). True: the head
    # predicts each bin's phase *increment* per sub-frame, accumulated in per-slot state.
    phase_accumulate: bool = False


@dataclass
class ModelConfig:
    name: str = "tiny"
    sample_rate: int = SAMPLE_RATE
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    lm: LMConfig = field(default_factory=LMConfig)
    vocoder: VocoderConfig = field(default_factory=VocoderConfig)
    seed: int = 0  # random initialisation when no checkpoint is given

    @property
    def frame_samples(self) -> int:
        return math.prod(self.encoder.strides)

    @property
    def frame_ms(self) -> float:
        return 1000 * self.frame_samples / self.sample_rate

    @property
    def frame_rate(self) -> float:
        return self.sample_rate / self.frame_samples

    @property
    def bitrate(self) -> float:
        """Bits per second of one direction's token stream."""
        bits = self.encoder.n_codebooks * math.log2(self.encoder.codebook_size)
        return bits * self.frame_rate

    def validate(self) -> None:
        e, lm, v = self.encoder, self.lm, self.vocoder
        checks = [
            (self.sample_rate == SAMPLE_RATE, "sample_rate", "must be 16000 (the session interface's rate)"),
            (len(e.channels) == len(e.strides) and e.channels, "encoder.strides", "one stride per channel stage"),
            (self.frame_samples % 320 == 0, "encoder.strides", "their product must be a multiple of 320 (20 ms)"),
            (e.n_codebooks >= 1 and e.codebook_size >= 2, "encoder.n_codebooks", "need >= 1 codebook of >= 2"),
            (lm.dim % lm.heads == 0 and (lm.dim // lm.heads) % 2 == 0, "lm.heads", "dim/heads must be even"),
            (lm.context >= 1, "lm.context", "must be >= 1"),
            (lm.speaker_dim == e.latent_dim, "lm.speaker_dim", "must equal encoder.latent_dim"),
            (lm.prosody_dim == 4, "lm.prosody_dim", "rate, pitch, emphasis, pause: must be 4"),
            (lm.text_vocab >= 258, "lm.text_vocab", "bytes + PAD + END need >= 258"),
            (lm.n_events >= 15, "lm.n_events", "none, cut-off, resumed and 12 DTMF digits need >= 15"),
            (self.frame_samples % v.hop == 0, "vocoder.hop", "must divide the model frame"),
            (v.n_fft % v.hop == 0 and v.n_fft >= v.hop, "vocoder.n_fft", "must be a multiple of hop"),
        ]
        for ok, name, why in checks:
            if not ok:
                raise ModelConfigError(f"model config {self.name!r}: {name}: {why}")

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2)

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = "config") -> "ModelConfig":
        parts = {"encoder": EncoderConfig, "lm": LMConfig, "vocoder": VocoderConfig}
        kwargs: dict[str, Any] = {}
        known = {f.name for f in dataclasses.fields(cls)}
        for key, value in data.items():
            if key not in known:
                raise ModelConfigError(f"{where}: unknown field {key!r}")
            if key in parts:
                sub_known = {f.name for f in dataclasses.fields(parts[key])}
                if not isinstance(value, dict) or set(value) - sub_known:
                    bad = sorted(set(value) - sub_known) if isinstance(value, dict) else [key]
                    raise ModelConfigError(f"{where}: unknown field {key}.{bad[0]}")
                kwargs[key] = parts[key](**value)
            else:
                kwargs[key] = value
        cfg = cls(**kwargs)
        cfg.validate()
        return cfg

    @classmethod
    def from_json_file(cls, path: str | Path) -> "ModelConfig":
        try:
            data = json.loads(Path(path).read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise ModelConfigError(f"{path}: cannot read model config: {exc}") from exc
        if not isinstance(data, dict):
            raise ModelConfigError(f"{path}: a model config is a JSON object")
        return cls.from_dict(data, str(path))


def tiny() -> ModelConfig:
    return ModelConfig()


def base() -> ModelConfig:
    return ModelConfig(
        name="base",
        encoder=EncoderConfig(channels=[32, 64, 128, 256], latent_dim=256, n_codebooks=8, codebook_size=1024),
        lm=LMConfig(dim=1024, layers=16, heads=16, ffn_dim=4096, context=375, speaker_dim=256),
        vocoder=VocoderConfig(dim=512, blocks=8),
    )


def talk() -> ModelConfig:
    """The shipped CPU reference model (engine/model/weights/talk): 40 ms frames, 4 x 1024 RVQ =
    1.0 kbit/s, a ~2.9 M-parameter causal conv codec and a small LM (trained separately).
    40 ms rather than the 80 ms of tiny/base: the issue's planning run reached its WER bar with this
    layout, phonemes (50-100 ms) get their own frames, and the turn latency drops by ~60 ms; the
    80 ms / 8 x 1024 layout was not trained here (engine/train/README.md). A 32-dim latent: at 128
    dims an early encoder's unit-norm latents crowd together and the first codebook used 5 of its
    1024 entries on a 3.5 s clip (70 at 32 dims after half the steps)."""
    return ModelConfig(
        name="talk",
        encoder=EncoderConfig(channels=[32, 64, 128, 256], strides=[4, 4, 5, 8], latent_dim=32, n_codebooks=4,
                              codebook_size=1024),
        lm=LMConfig(dim=192, layers=4, heads=4, ffn_dim=768, context=200, speaker_dim=32),
        vocoder=VocoderConfig(dim=256, blocks=4, hop=160, n_fft=640),
    )


PRESETS = {"tiny": tiny, "base": base, "talk": talk}


def preset(name: str) -> ModelConfig:
    if name not in PRESETS:
        raise ModelConfigError(f"unknown model config {name!r} (presets: {', '.join(PRESETS)}; or a checkpoint path)")
    cfg = PRESETS[name]()
    cfg.validate()
    return cfg


if __name__ == "__main__":
    from engine.model.model import SpeechModel

    for key in PRESETS:
        c = preset(key)
        m = SpeechModel(c)
        counts = m.parameter_counts()
        print(f"{key}: {sum(counts.values()) / 1e6:.2f} M params {counts}, frame {c.frame_ms:.0f} ms "
              f"({c.frame_rate} Hz), {c.encoder.n_codebooks}x{c.encoder.codebook_size} codes, {c.bitrate:.0f} bit/s")
