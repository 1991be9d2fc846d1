"""The per-call playout queue: agent frames wait here until the media clock plays them.

The gateway owns time: the clock thread pops exactly one frame per 20 ms tick. Silence
because the agent has nothing to say is not an underrun; an underrun is a tick inside an
utterance (its END_OF_UTTERANCE frame not yet played) with nothing queued — the engine
produced the frame too late. Underrun = silence + a counter, never a stall.

Pausing (barge-in, hold) keeps the queue and the position; flushing (a committed barge-in)
drops the queue and reports how much of the utterance the caller actually heard.
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass

from engine.session import FRAME_MS, AgentAudio, AudioFlags


@dataclass(slots=True)
class PlayoutPosition:
    utterance: int
    position_ms: int  # of that utterance, heard by the caller


class PlayoutQueue:
    def __init__(self, max_ms: int = 2000) -> None:
        self._frames: deque[AgentAudio] = deque()
        self._max_frames = max(1, max_ms // FRAME_MS)
        self._lock = threading.Lock()
        self._barge_paused = False
        self._hold_paused = False
        self._flushed_upto = -1  # frames of utterances <= this arriving late are dropped
        self._utterance = -1  # the utterance being played
        self._played_frames = 0  # of that utterance
        self._in_utterance = False
        self._last_flags = AudioFlags.NONE
        self.underruns = 0
        self.overflows = 0
        self.frames_played = 0

    def push(self, audio: AgentAudio) -> None:
        with self._lock:
            if audio.utterance <= self._flushed_upto:
                return
            if len(self._frames) >= self._max_frames:
                self._frames.popleft()
                self.overflows += 1
            self._frames.append(audio)

    def pop(self) -> bytes | None:
        """One tick: the frame to send, or None for silence."""
        with self._lock:
            if self._barge_paused or self._hold_paused:
                return None
            if not self._frames:
                if self._in_utterance:
                    self.underruns += 1
                return None
            audio = self._frames.popleft()
            if audio.utterance != self._utterance:
                self._utterance, self._played_frames = audio.utterance, 0
            self._played_frames += 1
            self._in_utterance = not audio.flags & AudioFlags.END_OF_UTTERANCE
            self._last_flags = audio.flags
            self.frames_played += 1
            return audio.pcm

    @property
    def speaking(self) -> bool:
        """Agent audio is being played (or is paused mid-utterance)."""
        return self._in_utterance or bool(self._frames)

    @property
    def interruptible(self) -> bool:
        head = self._frames[0].flags if self._frames else self._last_flags
        return bool(head & AudioFlags.INTERRUPTIBLE)

    @property
    def paused(self) -> bool:
        return self._barge_paused

    def position(self) -> PlayoutPosition:
        return PlayoutPosition(self._utterance, self._played_frames * FRAME_MS)

    def finished_utterance(self) -> int | None:
        """The utterance whose last frame the previous pop() played, if any."""
        if self._last_flags & AudioFlags.END_OF_UTTERANCE and not self._in_utterance:
            self._last_flags = AudioFlags.NONE
            return self._utterance
        return None

    def pause(self) -> PlayoutPosition:
        with self._lock:
            self._barge_paused = True
            return self.position()

    def resume(self) -> PlayoutPosition:
        with self._lock:
            self._barge_paused = False
            return self.position()

    def hold(self, on: bool) -> None:
        with self._lock:
            self._hold_paused = on

    def flush(self) -> PlayoutPosition:
        with self._lock:
            pos = self.position()
            latest = max([self._utterance] + [a.utterance for a in self._frames])
            self._flushed_upto = max(self._flushed_upto, latest)
            self._frames.clear()
            self._barge_paused = False
            self._in_utterance = False
            self._last_flags = AudioFlags.NONE
            return pos
