"""One call's media chain, the same for SIP and WebRTC (16 kHz, 20 ms frames):

    caller frame → AEC → noise suppression → speech detector → engine (the cleaned frame)
                                               (Silero batched over a worker's calls per tick)
    engine frames → playout queue → sender, and that same frame → the AEC's reference

`inbound` and `outbound` run on the media clock thread (pjsua2's conference bridge) once per
20 ms tick and must never block: sends to the engine are non-blocking, the playout queue's
lock is only ever held for a few list operations, the DSP costs ~0.3 ms per tick
(gateway/media/inbound.py). Speech-start while the agent's interruptible audio plays pauses
the playout in the same tick (barge-in step 1). Engine commands (FLUSH/RESUME/PAUSE) arrive
on the engine-link thread and act on the playout queue directly. Stage times go to /metrics
once a second, from this same thread.
"""

from __future__ import annotations

import time
from typing import Protocol

from engine.logs import get_logger

from engine import wire
from engine.session import (
    FRAME_BYTES,
    AgentAudio,
    Command,
    CommandKind,
    EventKind,
    PlayoutState,
    SessionEvent,
)
from gateway.config import MediaConfig
from gateway.dialplan import DialplanEntry
from gateway.media.clock import TickGaps
from gateway.media.detector import SpeechDetector
from gateway.media.inbound import InboundChain
from gateway.media.playout import PlayoutPosition, PlayoutQueue
from gateway.media.timing import OUTBOUND, stage_clock
from gateway.media.vad import VadEdge
from gateway.media.vad_batch import SileroBatch

log = get_logger(component="media")

FLUSH_TICKS = 50  # stage times to /metrics once a second


class SessionLink(Protocol):
    """Where a call's frames and events go (gateway/engine_link.py's EngineLink)."""

    def send(self, msg: bytes) -> bool: ...
    def send_essential(self, msg: bytes) -> bool: ...


class CallMedia:
    def __init__(
        self, slot: int, link: SessionLink, cfg: MediaConfig, entry: DialplanEntry, call_id: str = "",
        vad_batch: SileroBatch | None = None,
    ) -> None:
        """`vad_batch`: the worker's per-tick Silero batch (gateway/media/vad_batch.py), or None to
        run this call's detector frame by frame."""
        self.slot = slot
        self._link = link
        self.interruptible = entry.interruptible
        self.dsp = InboundChain(cfg, entry.vad_threshold_dbfs, call_id)
        self._batch = vad_batch
        if vad_batch is not None and isinstance(self.dsp.detector, SpeechDetector):
            vad_batch.attach(self.dsp.detector.silero)
        self._clean, self._t = b"", 0.0
        self.vad = self.dsp.detector
        self.playout = PlayoutQueue(cfg.playout_max_ms)
        self.started = False  # the call is confirmed: frames flow to the engine
        self.on_hold = False
        self.closed = False
        self.frames_in = 0
        self.frames_out = 0
        self.speech_starts = 0
        self.barge_in_pauses = 0
        self.ticks = TickGaps()

    # -- clock thread ---------------------------------------------------------------
    def inbound(self, pcm: bytes) -> None:
        if not self.started or self.on_hold or self.closed or len(pcm) != FRAME_BYTES:
            return
        t = time.monotonic()
        self.frames_in += 1
        if self.dsp.waits_for_batch and self._batch is not None:  # the tick's end never came: run it now
            self._batch.end_tick(late=True)
        self._clean, self._t = self.dsp.begin(pcm, t), t
        if self.dsp.waits_for_batch and self._batch is not None:
            self._batch.waiting.append(self)
        else:
            self.finish_inbound()

    def want_peek(self) -> None:  # SileroBatch.end_tick, between the chunks and the peeks
        self.dsp.want_peek()

    def finish_inbound(self, batch_share_ns: int = 0) -> None:
        """The frame's second half: its speech edge (barge-in pause), then the frame to the engine."""
        edge, t = self.dsp.finish(batch_share_ns), self._t
        self.vad = self.dsp.detector  # replaced if the detector failed
        if self.on_hold or self.closed:  # held or hung up while the frame waited for its batch
            return
        if edge is VadEdge.START:
            self.speech_starts += 1
            if self.interruptible and self.playout.speaking and self.playout.interruptible and not self.playout.paused:
                self.barge_in_pauses += 1
                self._report(PlayoutState.PAUSED, self.playout.pause(), t)
            self._event(EventKind.SPEECH_START, t)
        self._link.send(wire.encode_frame(self.slot, t, self._clean))
        if edge is VadEdge.STOP:
            self._event(EventKind.SPEECH_STOP, t)

    def outbound(self) -> bytes | None:
        if self.closed:
            return None
        t0 = stage_clock()
        now = time.monotonic()
        self.ticks.tick(now)
        pcm = self.playout.pop()
        if self.started and not self.on_hold:
            self.dsp.far(pcm)  # the AEC reference: exactly what goes to the sender (None = silence)
        done = self.playout.finished_utterance()
        if done is not None:
            self._report(PlayoutState.FINISHED, PlayoutPosition(done, self.playout.position().position_ms), now)
        if pcm is not None:
            self.frames_out += 1
        self.dsp.times.add(OUTBOUND, stage_clock() - t0)
        if self.ticks.count % FLUSH_TICKS == 0:
            self.dsp.times.flush()
        return pcm

    # -- engine-link thread -----------------------------------------------------------
    def on_audio(self, audio: AgentAudio) -> None:
        if not self.closed:
            self.playout.push(audio)

    def on_command(self, cmd: Command) -> None:
        t = time.monotonic()
        if cmd.kind is CommandKind.FLUSH:
            self._report(PlayoutState.FLUSHED, self.playout.flush(), t)
        elif cmd.kind is CommandKind.RESUME:
            self._report(PlayoutState.RESUMED, self.playout.resume(), t)
        elif cmd.kind is CommandKind.PAUSE:
            self._report(PlayoutState.PAUSED, self.playout.pause(), t)

    # -- control loop (SIP side) ----------------------------------------------------------
    def start(self) -> None:
        self.started = True
        self._event(EventKind.STARTED, time.monotonic())

    def hold(self, on: bool) -> None:
        if on == self.on_hold:
            return
        t = time.monotonic()
        if on and self.vad.in_speech:
            self._event(EventKind.SPEECH_STOP, t)  # nothing heard during hold counts as speech
        self.on_hold = on
        self.vad.reset()
        self.playout.hold(on)
        self._event(EventKind.HOLD if on else EventKind.RESUME, t)

    def dtmf(self, digit: str, duration_ms: int) -> None:
        self._event(EventKind.DTMF, time.monotonic(), digit=digit, duration_ms=duration_ms)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._event(EventKind.HANGUP, time.monotonic())
            self.dsp.times.flush()

    def _event(self, kind: EventKind, t: float, digit: str = "", duration_ms: int = 0) -> None:
        self._link.send_essential(wire.encode_event(self.slot, SessionEvent(kind, t, digit, duration_ms)))

    def _report(self, state: PlayoutState, pos: PlayoutPosition, t: float) -> None:
        ev = SessionEvent(EventKind.PLAYOUT, t, playout=state, utterance=pos.utterance, position_ms=pos.position_ms)
        self._link.send_essential(wire.encode_event(self.slot, ev))


class _NullLink:
    def send(self, msg: bytes) -> bool:
        return True

    def send_essential(self, msg: bytes) -> bool:
        return True


def warm_media_chain(cfg: MediaConfig) -> None:
    """Builds one throw-away chain so the first call does not wait for its DSP models."""
    t0 = time.monotonic()
    try:
        CallMedia(0, _NullLink(), cfg, DialplanEntry(name="warm-up")).close()  # type: ignore[arg-type]
    except Exception:
        log.exception("media chain warm-up failed")
        return
    log.info("media chain warm", seconds=round(time.monotonic() - t0, 2))
