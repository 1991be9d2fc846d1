"""Echo cancellation on the generated corpus: ERLE over time and near-end speech kept in double talk.

One case = one echo path at one rate. The agent talks for ~18 s (four piper/joe clips); the
first 12 s are single talk (echo only); from 12 s the caller (espeak-ng f3) talks over the
agent at the level of an ERL-6 echo (-26 dBFS): double talk. The canceller is the chain's own
(gateway/media/aec.py) fed 20 ms at a time: reference = the frame sent, near = echo + caller
+ line noise.

ERLE = echo power in / power out, over the frames where the echo is active (its noise-free
echo component is known, so line noise does not inflate it), in the first second and the
first 2 s after the echo first arrives, after that, and the worst 0.5 s window after 1 s.
Near-end kept = output power / caller power over the double-talk frames where the caller
talks (0 dB: untouched; the canceller's residual echo, >= 30 dB down once converged, is
counted in too). The chain delays its output by ~14 ms (AEC3's blocks and NS), which 20 ms
power frames absorb.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import soxr

from gateway.bench.aec_corpus import EchoPath, EchoPathSpec, agent_turns, at_level, read_clip, to_int16
from gateway.config import MediaConfig
from gateway.media.aec import EchoCanceller
from gateway.media.detector import SpeechDetector
from gateway.media.inbound import detector_settings
from gateway.media.noise import NoiseGain
from gateway.media.vad import VadEdge

SINGLE_TALK_S = 12.0
NEAR_LEVEL_DBFS = -26.0
FRAME_MS = 20


@dataclass(frozen=True)
class Variant:
    name: str
    aec: bool = True
    noise: str = "apm"  # apm | webrtc | off
    agc_dbfs: int = 0


AEC = Variant("AEC3+NS")
NO_AEC = Variant("no AEC", aec=False, noise="off")
NS_VARIANTS = (
    Variant("AEC3 alone", noise="off"),
    AEC,
    Variant("AEC3+NS+AGC(apm)", agc_dbfs=3),
    Variant("AEC3+webrtc-noise-gain NS", noise="webrtc"),
    Variant("AEC3+webrtc-noise-gain NS+AGC", noise="webrtc", agc_dbfs=3),
)


@dataclass
class CaseResult:
    spec: EchoPathSpec
    rate: int
    variant: str
    erle_1s: float
    erle_2s: float
    erle_after: float
    erle_min_after_1s: float
    near_kept_db: float
    false_starts: int
    echo_to_noise_db: float
    us_per_frame: float
    noise_out_dbfs: float
    trace: list[float] = field(default_factory=list)  # ERLE per 0.5 s window of single talk


ERLE_CAP_DB = 60.0  # beyond this the output is below the int16 floor of a noise-free simulation


def _db(num: float, den: float) -> float:
    return float(min(ERLE_CAP_DB, 10 * np.log10(max(num, 1e-20) / max(den, 1e-20))))


class Signals:
    """The far and near signals of a case at one rate, built once per rate."""

    def __init__(self, rate: int) -> None:
        far = np.concatenate(agent_turns())
        near_clips = [read_clip(n) for n in ("hours_f3", "person_f3")]
        near_speech = at_level(np.concatenate(near_clips), NEAR_LEVEL_DBFS)
        near = np.zeros_like(far)
        start = int(SINGLE_TALK_S * 16000)
        n = min(len(near_speech), len(far) - start)
        near[start : start + n] = near_speech[:n]
        if rate != 16000:
            far = np.asarray(soxr.resample(far, 16000, rate), dtype=np.float64)
            near = np.asarray(soxr.resample(near, 16000, rate), dtype=np.float64)
        self.rate, self.far, self.near = rate, far, near
        self.calibration = far[: 8 * rate]


def run_case(spec: EchoPathSpec, sig: Signals, variant: Variant, cfg: MediaConfig | None = None) -> CaseResult:
    import time

    rate = sig.rate
    hop = rate * FRAME_MS // 1000
    path = EchoPath(spec, rate, hop, sig.calibration)
    aec = EchoCanceller(rate, noise_suppression=variant.noise == "apm", auto_gain=variant.agc_dbfs > 0 and variant.noise == "apm") if variant.aec else None
    ns = NoiseGain(2, variant.agc_dbfs) if variant.noise == "webrtc" and rate == 16000 else None
    detector = SpeechDetector(detector_settings(cfg or MediaConfig()), rate=rate)
    frames = len(sig.far) // hop
    p_echo, p_out, p_near, p_noise = (np.zeros(frames) for _ in range(4))
    starts = 0
    st_frames = int(SINGLE_TALK_S * 1000 / FRAME_MS)
    spent = 0
    for i in range(frames):
        sent = to_int16(sig.far[i * hop : (i + 1) * hop])
        echo = path.echo(sent.astype(np.float64) / 32768.0)
        noise = path.noise(hop)
        near = sig.near[i * hop : (i + 1) * hop]
        mic = to_int16(echo + near + noise)
        t0 = time.perf_counter_ns()
        out_b = mic.tobytes()
        if aec is not None:
            aec.far(sent.tobytes())
            out_b = aec.near(out_b)
        if ns is not None:
            out_b = ns.process(out_b)
        spent += time.perf_counter_ns() - t0
        out = np.frombuffer(out_b, dtype=np.int16).astype(np.float64) / 32768.0
        if i < st_frames and detector.update(np.frombuffer(out_b, dtype=np.int16)) is VadEdge.START:
            starts += 1
        p_echo[i], p_out[i], p_near[i] = np.mean(echo**2), np.mean(out**2), np.mean(near**2)
        p_noise[i] = np.mean(noise**2)
    return _summarise(spec, rate, variant, p_echo, p_out, p_near, p_noise, starts, spent / frames / 1000)


def _summarise(
    spec: EchoPathSpec, rate: int, variant: Variant, p_echo: np.ndarray, p_out: np.ndarray,
    p_near: np.ndarray, p_noise: np.ndarray, starts: int, us: float,
) -> CaseResult:  # fmt: skip
    st = int(SINGLE_TALK_S * 1000 / FRAME_MS)
    echo_level = 10 * np.log10(np.mean(p_echo[:st][p_echo[:st] > p_echo[:st].max() * 1e-3]) + 1e-20)
    active = p_echo >= 10 ** ((echo_level - 20) / 10)
    active[st:] = False
    t0 = int(np.argmax(active))
    per_s = 1000 // FRAME_MS

    def erle(a: int, b: int) -> float:
        sel = np.zeros_like(active)
        sel[t0 + a : min(t0 + b, st)] = True
        sel &= active
        return _db(float(p_echo[sel].sum()), float(p_out[sel].sum())) if sel.sum() >= 5 else float("nan")

    half = per_s // 2
    trace = [erle(k, k + half) for k in range(0, st - t0 - half + 1, half)]
    after_1s = [v for k, v in zip(range(0, st, half), trace) if k >= per_s and not np.isnan(v)]
    near_level = 10 * np.log10(np.mean(p_near[p_near > 0]) + 1e-20) if np.any(p_near > 0) else -120
    dt = (p_near >= 10 ** ((near_level - 15) / 10)) & (p_echo >= 10 ** ((echo_level - 20) / 10))
    dt[:st] = False
    kept = 10 * np.log10(max(p_out[dt].sum(), 1e-20) / max(p_near[dt].sum(), 1e-20)) if dt.any() else float("nan")
    quiet = ~active & (p_near == 0)
    quiet[:t0] = False
    noise_out = 10 * np.log10(np.mean(p_out[quiet]) + 1e-20) if quiet.any() else -120.0
    noise_in = 10 * np.log10(np.mean(p_noise[:st]) + 1e-20)
    return CaseResult(
        spec, rate, variant.name, erle(0, per_s), erle(0, 2 * per_s), erle(2 * per_s, st),
        min(after_1s) if after_1s else float("nan"), float(kept), starts, float(echo_level - noise_in), us,
        float(noise_out), trace,
    )  # fmt: skip


def corpus(short: bool) -> list[EchoPathSpec]:
    if short:
        return [
            EchoPathSpec(100, 6, "hybrid"),
            EchoPathSpec(250, 12, "room", seed=2),
            EchoPathSpec(500, 6, "hybrid", clip=True, noise_dbfs=-60, seed=3),
        ]
    specs = []
    seed = 1
    for ir in ("hybrid", "room"):
        for delay in (20, 100, 250, 500):
            for erl in (0, 6, 12, 20):
                specs.append(EchoPathSpec(delay, erl, ir, seed=seed))
                seed += 1
        for delay in (100, 500):
            for erl in (0, 6, 20):
                specs.append(EchoPathSpec(delay, erl, ir, clip=True, noise_dbfs=-60, seed=seed))
                seed += 1
    return specs
