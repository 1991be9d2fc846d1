"""False and true barge-ins through the whole per-call chain (gateway/media/chain.py's CallMedia).

Each simulated call is a real CallMedia (AEC, noise suppression, speech detector, playout
queue, the pause-in-the-same-tick rule) clocked tick by tick: the agent's frames go into its
playout queue the way the engine sends them (a few frames ahead), `outbound()` hands out the
frame to send, the simulated line takes it through an echo path (wideband, or narrowband:
16 → 8 kHz, μ-law both ways, 8 → 16 kHz with the chain's own streaming resampler), adds the
caller and line noise, and `inbound()` gets the result. Frames and events go to a sink that
stands where the engine would be; a speech-stop after a pause is answered with RESUME, as the
turn controller does for speech shorter than barge_in_min_ms.

False barge-ins: calls of several agent turns (fresh canceller each call, so every call's
first turn meets an unconverged AEC) with no caller speech: every speech-start counts.
True barge-ins: the caller starts talking 1-3 s into the agent's second turn, at 0, -5 or
-10 dB relative to the echo; detected = playout paused within 1 s; delay = from the first
sample of the caller's speech to the end of the tick whose speech-start paused the playout.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import soxr

from engine.session import FRAME_MS, FRAME_SAMPLES, AgentAudio, AudioFlags, Command, CommandKind
from gateway.bench.aec_corpus import EchoPath, EchoPathSpec, active_level_db, mulaw, to_int16
from gateway.config import MediaConfig
from gateway.dialplan import DialplanEntry
from gateway.media.chain import CallMedia
from gateway.media.resample import FrameResampler

LEAD_FRAMES = 3
DETECT_WINDOW_S = 1.0


class NullSink:
    """Stands where the engine link would be: takes every frame and event."""

    def send(self, msg: bytes) -> bool:
        return True

    def send_essential(self, msg: bytes) -> bool:
        return True


@dataclass(frozen=True)
class LinePath:
    spec: EchoPathSpec
    narrowband: bool  # an 8 kHz G.711 leg between us and the far phone

    @property
    def name(self) -> str:
        return f"{self.spec.name} {'G.711 8k' if self.narrowband else 'wideband 16k'}"


class SimulatedLine:
    """Our sent frames → the far phone's echo (+ caller + noise) → the frame we receive."""

    def __init__(self, path: LinePath, calibrate_on: np.ndarray) -> None:
        self.nb = path.narrowband
        rate = 8000 if self.nb else 16000
        hop = rate * FRAME_MS // 1000
        cal = calibrate_on if not self.nb else np.asarray(soxr.resample(calibrate_on, 16000, 8000), dtype=np.float64)
        self.echo_path = EchoPath(path.spec, rate, hop, cal)
        if self.nb:
            self._down = FrameResampler(16000, 8000, hop)
            self._up = FrameResampler(8000, 16000, FRAME_SAMPLES)
            self._caller_down = FrameResampler(16000, 8000, hop)

    def tick(self, sent: bytes | None, caller: np.ndarray) -> bytes:
        """One 20 ms tick: what we sent now, the caller's 16 kHz float samples now → what we hear now."""
        x = np.frombuffer(sent, dtype=np.int16) if sent is not None else np.zeros(FRAME_SAMPLES, np.int16)
        if self.nb:
            far = mulaw(self._down.process(x).astype(np.float64) / 32768.0)
            near = self._caller_down.process(to_int16(caller)).astype(np.float64) / 32768.0
            mic = mulaw(self.echo_path.echo(far) + near + self.echo_path.noise(len(far)))
            return self._up.process(to_int16(mic)).tobytes()
        far = x.astype(np.float64) / 32768.0
        return to_int16(self.echo_path.echo(far) + caller + self.echo_path.noise(FRAME_SAMPLES)).tobytes()


class Call:
    """One simulated call: CallMedia + line + an agent that queues frames a few ahead."""

    def __init__(self, path: LinePath, cfg: MediaConfig, calibrate_on: np.ndarray) -> None:
        self.media = CallMedia(0, NullSink(), cfg, DialplanEntry(name="bench"))
        self.media.start()
        self.line = SimulatedLine(path, calibrate_on)
        self._pending: list[AgentAudio] = []
        self._utterance = 0
        self.tick_no = 0

    def say(self, audio: np.ndarray) -> None:
        pcm = to_int16(np.concatenate([audio, np.zeros((-len(audio)) % FRAME_SAMPLES)]))
        self._utterance += 1
        frames = [pcm[i : i + FRAME_SAMPLES].tobytes() for i in range(0, len(pcm), FRAME_SAMPLES)]
        for i, f in enumerate(frames):
            flags = AudioFlags.INTERRUPTIBLE | (AudioFlags.END_OF_UTTERANCE if i == len(frames) - 1 else 0)
            self._pending.append(AgentAudio(f, self._utterance, AudioFlags(flags)))

    @property
    def agent_done(self) -> bool:
        return not self._pending and not self.media.playout.speaking

    def tick(self, caller: np.ndarray | None = None) -> int:
        """Run one 20 ms tick; returns how many speech-starts it produced (0 or 1)."""
        q = self.media.playout
        while self._pending and not q.paused and len(q._frames) < LEAD_FRAMES:
            self.media.on_audio(self._pending.pop(0))
        was_in_speech, starts = self.media.vad.in_speech, self.media.speech_starts
        sent = self.media.outbound()
        heard = self.line.tick(sent, caller if caller is not None else np.zeros(FRAME_SAMPLES))
        self.media.inbound(heard)
        if was_in_speech and not self.media.vad.in_speech and q.paused:
            self.media.on_command(Command(CommandKind.RESUME, 0.0, reason="short speech"))
        self.tick_no += 1
        return self.media.speech_starts - starts


@dataclass
class FalseResult:
    path: str
    turns: int
    starts: int
    start_turns: list[int] = field(default_factory=list)  # the turn index (within its call) of each

    @property
    def per_100(self) -> float:
        return 100.0 * self.starts / max(1, self.turns)


def false_barge_ins(
    path: LinePath, cfg: MediaConfig, turns: list[np.ndarray], calls: int, turns_per_call: int,
    rng: np.random.Generator, progress: Callable[[], None] = lambda: None,
) -> FalseResult:  # fmt: skip
    res = FalseResult(path.name, 0, 0)
    for _ in range(calls):
        call = Call(path, cfg, np.concatenate(turns))
        for k in range(turns_per_call):
            call.say(turns[int(rng.integers(len(turns)))])
            while not call.agent_done:
                if call.tick():
                    res.start_turns.append(k)
                    res.starts += 1
            for _ in range(int(rng.integers(15, 50))):  # 0.3-1 s of nobody talking
                res.starts += call.tick()
            res.turns += 1
        progress()
    return res


@dataclass
class TrueResult:
    path: str
    caller_db: float
    trials: int = 0
    detected: int = 0
    delays_ms: list[float] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.detected / max(1, self.trials)

    def pct(self, q: float) -> float:
        return float(np.percentile(self.delays_ms, q)) if self.delays_ms else float("nan")


def true_barge_ins(
    path: LinePath, cfg: MediaConfig, turns: list[np.ndarray], callers: list[tuple[str, np.ndarray, float]],
    caller_db: float, trials: int, rng: np.random.Generator, progress: Callable[[], None] = lambda: None,
) -> TrueResult:  # fmt: skip
    res = TrueResult(path.name, caller_db)
    echo_db = active_level_db(np.concatenate(turns)) - path.spec.erl_db
    for n in range(trials):
        call = Call(path, cfg, np.concatenate(turns))
        call.say(turns[(n + 1) % len(turns)])  # first turn: the canceller converges on it
        while not call.agent_done:
            call.tick()
        for _ in range(int(rng.integers(15, 40))):
            call.tick()
        call.say(turns[0])  # the long one: the caller cuts in 1-3 s into it
        for _ in range(int(rng.integers(50, 150))):
            call.tick()
        _, clip, onset_s = callers[n % len(callers)]
        clip = clip * 10 ** ((echo_db + caller_db - active_level_db(clip)) / 20)
        onset = int(onset_s * 16000)
        start = max(0, onset - int(rng.integers(0, FRAME_SAMPLES)))  # the onset falls anywhere in a frame
        clip, first_voiced = clip[start:], onset - start
        res.trials += 1
        pauses = call.media.barge_in_pauses
        for i in range(int(DETECT_WINDOW_S * 1000 / FRAME_MS)):
            chunk = clip[i * FRAME_SAMPLES : (i + 1) * FRAME_SAMPLES]
            chunk = np.concatenate([chunk, np.zeros(FRAME_SAMPLES - len(chunk))])
            call.tick(chunk)
            if call.media.barge_in_pauses > pauses:
                res.detected += 1
                res.delays_ms.append(((i + 1) * FRAME_SAMPLES - first_voiced) / 16.0)
                break
        progress()
    return res


def greeting_barge_ins(
    path: LinePath, cfg: MediaConfig, turns: list[np.ndarray], callers: list[tuple[str, np.ndarray, float]],
    caller_db: float, trials: int, rng: np.random.Generator, progress: Callable[[], None] = lambda: None,
) -> TrueResult:  # fmt: skip
    """The caller cuts in 0.8-2.8 s into the call's first turn (the greeting), while the canceller
    has not converged — or, on an echo-free line, has nothing to converge on. `caller_db` is
    relative to the agent's own sent level (the echo may be absent)."""
    res = TrueResult(path.name, caller_db)
    agent_db = active_level_db(np.concatenate(turns))
    for n in range(trials):
        call = Call(path, cfg, np.concatenate(turns))
        call.say(turns[0])
        for _ in range(int(rng.integers(40, 140))):
            call.tick()
        _, clip, onset_s = callers[n % len(callers)]
        clip = clip * 10 ** ((agent_db + caller_db - active_level_db(clip)) / 20)
        onset = int(onset_s * 16000)
        start = max(0, onset - int(rng.integers(0, FRAME_SAMPLES)))
        clip, first_voiced = clip[start:], onset - start
        res.trials += 1
        for i in range(int(DETECT_WINDOW_S * 1000 / FRAME_MS)):
            chunk = clip[i * FRAME_SAMPLES : (i + 1) * FRAME_SAMPLES]
            call.tick(np.concatenate([chunk, np.zeros(FRAME_SAMPLES - len(chunk))]))
            if call.media.barge_in_pauses:
                res.detected += 1
                res.delays_ms.append(((i + 1) * FRAME_SAMPLES - first_voiced) / 16.0)
                break
        progress()
    return res
