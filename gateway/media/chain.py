"""One call's media chain: caller frames → VAD → engine; engine frames → playout queue.

`inbound` and `outbound` run on pjsua2's conference-bridge clock thread once per 20 ms tick
and must never block: sends to the engine are non-blocking, the playout queue's lock is
only ever held for a few list operations. Engine commands (FLUSH/RESUME/PAUSE) arrive on
the engine-link thread and act on the playout queue directly.
"""

from __future__ import annotations

import time

import numpy as np

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
from gateway.engine_link import EngineLink
from gateway.media.clock import TickGaps
from gateway.media.playout import PlayoutPosition, PlayoutQueue
from gateway.media.vad import EnergyVad, VadEdge


class CallMedia:
    def __init__(self, slot: int, link: EngineLink, cfg: MediaConfig, entry: DialplanEntry) -> None:
        self.slot = slot
        self._link = link
        self.interruptible = entry.interruptible
        threshold = entry.vad_threshold_dbfs or cfg.vad_threshold_dbfs
        self.vad = EnergyVad(threshold, cfg.vad_start_ms, cfg.vad_stop_ms)
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
        edge = self.vad.update(np.frombuffer(pcm, dtype=np.int16))
        if edge is VadEdge.START:
            self.speech_starts += 1
            if self.interruptible and self.playout.speaking and self.playout.interruptible and not self.playout.paused:
                self.barge_in_pauses += 1
                self._report(PlayoutState.PAUSED, self.playout.pause(), t)
            self._event(EventKind.SPEECH_START, t)
        self._link.send(wire.encode_frame(self.slot, t, pcm))
        if edge is VadEdge.STOP:
            self._event(EventKind.SPEECH_STOP, t)

    def outbound(self) -> bytes | None:
        if self.closed:
            return None
        now = time.monotonic()
        self.ticks.tick(now)
        pcm = self.playout.pop()
        done = self.playout.finished_utterance()
        if done is not None:
            self._report(PlayoutState.FINISHED, PlayoutPosition(done, self.playout.position().position_ms), now)
        if pcm is not None:
            self.frames_out += 1
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

    def _event(self, kind: EventKind, t: float, digit: str = "", duration_ms: int = 0) -> None:
        self._link.send_essential(wire.encode_event(self.slot, SessionEvent(kind, t, digit, duration_ms)))

    def _report(self, state: PlayoutState, pos: PlayoutPosition, t: float) -> None:
        ev = SessionEvent(EventKind.PLAYOUT, t, playout=state, utterance=pos.utterance, position_ms=pos.position_ms)
        self._link.send_essential(wire.encode_event(self.slot, ev))
