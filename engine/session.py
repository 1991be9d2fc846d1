"""The session interface between a gateway (SIP, WebRTC, tests) and the engine.

The engine sees sessions, never SIP. Both directions carry 16 kHz mono int16 PCM in
20 ms frames (320 samples), whatever the line codec. The gateway owns time: it sends one
caller frame per 20 ms tick while the call is live and not on hold, and plays one agent
frame per tick from its playout queue. Everything else is an event (gateway → engine) or
a command (engine → gateway), each with a monotonic timestamp in seconds.

Barge-in is three steps: the gateway *pauses* playout in the tick its VAD reports
speech-start while the agent's audio is interruptible; the engine then *commits*
(FLUSH: the gateway drops the queue and reports what the caller actually heard) or
*resumes* (RESUME: playback continues where it paused).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

SAMPLE_RATE = 16_000
FRAME_MS = 20
FRAME_SAMPLES = SAMPLE_RATE * FRAME_MS // 1000  # 320
FRAME_BYTES = FRAME_SAMPLES * 2  # int16


class EventKind(enum.IntEnum):
    """Gateway → engine: what happened on the call."""

    STARTED = 1  # the call is connected (media flowing); the agent may greet
    SPEECH_START = 2
    SPEECH_STOP = 3
    HOLD = 4
    RESUME = 5
    DTMF = 6  # digit + duration_ms
    HANGUP = 7  # the call ended (either side); the slot is released after this
    PLAYOUT = 8  # playout report: see PlayoutState


class PlayoutState(enum.IntEnum):
    """What the gateway's playout queue did; carried by a PLAYOUT event."""

    PAUSED = 1  # speech-start while interruptible: playout paused in that tick
    RESUMED = 2
    FLUSHED = 3  # after a FLUSH command: position = what the caller heard
    FINISHED = 4  # the last frame of an utterance was played


class CommandKind(enum.IntEnum):
    """Engine → gateway."""

    FLUSH = 1  # commit a barge-in: drop queued agent audio, report the position
    RESUME = 2  # false barge-in (backchannel, noise): continue from the pause
    HANGUP = 3  # the agent ends the call
    TRANSFER = 4  # blind transfer (SIP REFER) to `target` (empty: the dialplan's)
    PAUSE = 5  # the engine asks playout to pause (e.g. model-detected overlap)


class AudioFlags(enum.IntFlag):
    """Per agent frame."""

    NONE = 0
    INTERRUPTIBLE = 1  # a caller's speech-start may pause playout of this frame
    END_OF_UTTERANCE = 2  # the last frame of an utterance


@dataclass(slots=True)
class SessionEvent:
    kind: EventKind
    t: float  # time.monotonic() on the gateway's clock
    digit: str = ""
    duration_ms: int = 0
    playout: PlayoutState | None = None
    utterance: int = 0  # PLAYOUT: the utterance the report is about
    position_ms: int = 0  # PLAYOUT: ms of that utterance the caller has heard


@dataclass(slots=True)
class AgentAudio:
    """One 20 ms agent frame for the playout queue."""

    pcm: bytes  # FRAME_BYTES of int16 little-endian
    utterance: int  # increasing id; playback positions refer to it
    flags: AudioFlags = AudioFlags.INTERRUPTIBLE


@dataclass(slots=True)
class Command:
    kind: CommandKind
    t: float
    target: str = ""  # TRANSFER
    reason: str = ""


@dataclass(slots=True)
class SessionInfo:
    """Given when a call is offered: enough for the engine to pick and configure an agent."""

    call_id: str
    called: str  # the dialled number / SIP user
    caller: str
    agent: dict[str, object] = field(default_factory=dict)  # the dialplan entry's agent settings
    transport: str = "sip"  # sip | webrtc | test
