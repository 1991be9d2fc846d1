"""The round trips `talkover bench model` compares: uncoded, Opus 6 kbit/s, AMR-NB 4.75 kbit/s
(both through PyAV's bundled ffmpeg: libopus, libopencore_amrnb) and talkover's own codec
streamed one model frame at a time, as the engine runs it."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import soxr
import torch

from engine.model.model import SpeechModel

RATE = 16_000


@dataclass
class Coded:
    pcm: np.ndarray  # int16, 16 kHz, time-aligned with the input, same length
    payload_bits: int  # what the codec sent (0 for uncoded)


@dataclass
class Condition:
    name: str
    nominal_bps: float  # 0: uncoded
    run: Callable[[np.ndarray], Coded]
    busy_s: float = 0.0  # processing time summed over clips (for the talkover codec: its RTF)
    audio_s: float = 0.0
    bits: int = 0
    notes: list[str] = field(default_factory=list)
    diagnostic: bool = False  # a row that explains (bench model --diagnose), never a bar

    def apply(self, pcm: np.ndarray) -> np.ndarray:
        t0 = time.perf_counter()
        coded = self.run(pcm)
        self.busy_s += time.perf_counter() - t0
        self.audio_s += pcm.size / RATE
        self.bits += coded.payload_bits
        return coded.pcm

    @property
    def measured_bps(self) -> float:
        return self.bits / self.audio_s if self.audio_s else 0.0

    @property
    def rtf(self) -> float:
        return self.busy_s / self.audio_s if self.audio_s else 0.0


def align(reference: np.ndarray, degraded: np.ndarray, max_lag: int = 1600) -> np.ndarray:
    """`degraded` shifted by the lag (0..max_lag samples late) that best matches `reference`,
    cut or zero-padded to its length: codec delays differ, STOI compares sample-aligned signals."""
    ref = reference.astype(np.float64)
    deg = np.concatenate([degraded.astype(np.float64), np.zeros(max(0, ref.size + max_lag - degraded.size))])
    n = ref.size + max_lag
    spec = np.fft.rfft(deg[:n], 2 * n) * np.conj(np.fft.rfft(ref, 2 * n))
    corr = np.fft.irfft(spec, 2 * n)[: max_lag + 1]
    lag = int(np.argmax(corr))
    return deg[lag : lag + ref.size].astype(np.int16) if degraded.dtype == np.int16 else deg[lag : lag + ref.size]


def _to_int16(x: np.ndarray) -> np.ndarray:
    return np.clip(np.round(x), -32768, 32767).astype(np.int16)


def _ffmpeg_round_trip(pcm: np.ndarray, encoder: str, decoder: str, rate: int, bit_rate: int) -> tuple[np.ndarray, int]:
    import av

    x = pcm if rate == RATE else _to_int16(soxr.resample(pcm.astype(np.float32), RATE, rate, quality="HQ"))
    enc = av.CodecContext.create(encoder, "w")
    enc.sample_rate, enc.layout, enc.format, enc.bit_rate = rate, "mono", "s16", bit_rate
    enc.open()
    frame = av.AudioFrame.from_ndarray(x[None, :], format="s16", layout="mono")
    frame.sample_rate, frame.pts = rate, 0
    packets = list(enc.encode(frame)) + list(enc.encode(None))
    dec = av.CodecContext.create(decoder, "r")
    out, out_rate = [], rate
    for packet in packets:
        for f in dec.decode(packet):
            out_rate = f.sample_rate
            channels = len(f.layout.channels)  # libopus decodes to stereo: keep the first channel
            arr = f.to_ndarray()
            y = (arr[0] if f.format.is_planar else arr.reshape(-1, channels)[:, 0]).astype(np.float32)
            out.append(y * 32768.0 if f.format.name.startswith("flt") else y)
    y = np.concatenate(out) if out else np.zeros(0, np.float32)
    if out_rate != RATE:
        y = soxr.resample(y, out_rate, RATE, quality="HQ")
    return _to_int16(y), sum(p.size for p in packets) * 8


def opus(bit_rate: int = 6000) -> Condition:
    def run(pcm: np.ndarray) -> Coded:
        y, bits = _ffmpeg_round_trip(pcm, "libopus", "libopus", RATE, bit_rate)
        return Coded(align(pcm, y), bits)

    return Condition(f"Opus {bit_rate / 1000:g}k", bit_rate, run)


def amr_nb(bit_rate: int = 4750) -> Condition:
    def run(pcm: np.ndarray) -> Coded:
        y, bits = _ffmpeg_round_trip(pcm, "libopencore_amrnb", "amrnb", 8000, bit_rate)
        return Coded(align(pcm, y), bits)

    return Condition(f"AMR-NB {bit_rate / 1000:g}k", bit_rate, run)


def uncoded() -> Condition:
    return Condition("uncoded", 0, lambda pcm: Coded(pcm.copy(), 0))


def talkover(model: SpeechModel, name: str = "talkover") -> Condition:
    """Streaming: one model frame in, its codes, one frame out, state carried (batch of one)."""
    frame = model.cfg.frame_samples
    bits_per_frame = model.cfg.bitrate * model.cfg.frame_samples / RATE

    @torch.no_grad()
    def run(pcm: np.ndarray) -> Coded:
        n = -(-pcm.size // frame) * frame
        x = torch.zeros(1, n)
        x[0, : pcm.size] = torch.from_numpy(pcm.astype(np.float32) / 32768.0)
        enc_state, voc_state, out = None, None, []
        for i in range(0, n, frame):
            codes, _, enc_state = model.encode(x[:, i : i + frame], enc_state)
            y, voc_state = model.vocode(codes, voc_state)
            out.append(y)
        y = torch.cat(out, 1)[0, : pcm.size].numpy() * 32768.0
        return Coded(_to_int16(y), round(bits_per_frame * (n // frame)))

    return Condition(f"{name} {model.cfg.bitrate / 1000:g}k", model.cfg.bitrate, run)
