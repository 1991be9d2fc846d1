"""Wire format of the session interface between gateway workers and the engine process.

One message per datagram on a Unix SOCK_SEQPACKET socket (reliable, ordered, message
boundaries kept), so no framing layer is needed. Every message starts with a 1-byte type
and a 2-byte slot. A worker's connection owns the slots it opened: when it drops, the
engine frees them all. Measured cost: `talkover bench transport`.
"""

from __future__ import annotations

import enum
import json
import struct
from dataclasses import asdict
from typing import Union

from engine.session import (
    FRAME_BYTES,
    AgentAudio,
    AudioFlags,
    Command,
    CommandKind,
    EventKind,
    PlayoutState,
    SessionEvent,
    SessionInfo,
)

NO_SLOT = 0xFFFF
MAX_MESSAGE = 65536  # an OPEN carries the dialplan entry as JSON


class MsgType(enum.IntEnum):
    OPEN = 1  # worker → engine: request a slot for an offered call (key, SessionInfo JSON)
    OPENED = 2  # engine → worker: slot granted (or NO_SLOT with a reason)
    FRAME = 3  # worker → engine: one caller frame
    EVENT = 4  # worker → engine
    AUDIO = 5  # engine → worker: one agent frame
    COMMAND = 6  # engine → worker


_HDR = struct.Struct("<BH")
_OPEN = struct.Struct("<BHI")
_OPENED = struct.Struct("<BHI")
_FRAME = struct.Struct("<BHd")
_EVENT = struct.Struct("<BHBd2sIBIi")
_AUDIO = struct.Struct("<BHIB")
_COMMAND = struct.Struct("<BHBd")


class WireError(ValueError):
    """A message that does not decode: the sender is broken; log and drop it."""


def encode_open(key: int, info: SessionInfo) -> bytes:
    msg = _OPEN.pack(MsgType.OPEN, NO_SLOT, key) + json.dumps(asdict(info)).encode()
    if len(msg) > MAX_MESSAGE:
        raise WireError(f"session info of {len(msg)} bytes exceeds {MAX_MESSAGE}")
    return msg


def encode_opened(key: int, slot: int, reason: str = "") -> bytes:
    return _OPENED.pack(MsgType.OPENED, slot, key) + reason.encode()


def encode_frame(slot: int, t: float, pcm: bytes) -> bytes:
    return _FRAME.pack(MsgType.FRAME, slot, t) + pcm


def encode_event(slot: int, ev: SessionEvent) -> bytes:
    return _EVENT.pack(
        MsgType.EVENT,
        slot,
        ev.kind,
        ev.t,
        ev.digit.encode()[:2],
        ev.duration_ms,
        ev.playout or 0,
        ev.utterance,
        ev.position_ms,
    )


def encode_audio(slot: int, audio: AgentAudio) -> bytes:
    return _AUDIO.pack(MsgType.AUDIO, slot, audio.utterance, audio.flags) + audio.pcm


def encode_command(slot: int, cmd: Command) -> bytes:
    tail = json.dumps({"target": cmd.target, "reason": cmd.reason}).encode()
    return _COMMAND.pack(MsgType.COMMAND, slot, cmd.kind, cmd.t) + tail


Decoded = Union[
    tuple[MsgType, int, int, SessionInfo],  # OPEN: slot, key, info
    tuple[MsgType, int, int, str],  # OPENED: slot, key, reason
    tuple[MsgType, int, float, bytes],  # FRAME: slot, t, pcm
    tuple[MsgType, int, SessionEvent],  # EVENT
    tuple[MsgType, int, AgentAudio],  # AUDIO
    tuple[MsgType, int, Command],  # COMMAND
]


def decode(msg: bytes) -> Decoded:
    if len(msg) < _HDR.size:
        raise WireError(f"short message ({len(msg)} bytes)")
    mtype, slot = _HDR.unpack_from(msg)
    try:
        kind = MsgType(mtype)
        if kind is MsgType.FRAME:
            _, _, t = _FRAME.unpack_from(msg)
            pcm = msg[_FRAME.size :]
            if len(pcm) != FRAME_BYTES:
                raise WireError(f"frame of {len(pcm)} bytes, expected {FRAME_BYTES}")
            return kind, slot, t, pcm
        if kind is MsgType.AUDIO:
            _, _, utt, flags = _AUDIO.unpack_from(msg)
            pcm = msg[_AUDIO.size :]
            if len(pcm) != FRAME_BYTES:
                raise WireError(f"audio of {len(pcm)} bytes, expected {FRAME_BYTES}")
            return kind, slot, AgentAudio(pcm, utt, AudioFlags(flags))
        if kind is MsgType.EVENT:
            _, _, ek, t, digit, dur, po, utt, pos = _EVENT.unpack_from(msg)
            ev = SessionEvent(
                EventKind(ek),
                t,
                digit.rstrip(b"\0").decode(),
                dur,
                PlayoutState(po) if po else None,
                utt,
                pos,
            )
            return kind, slot, ev
        if kind is MsgType.COMMAND:
            _, _, ck, t = _COMMAND.unpack_from(msg)
            tail = json.loads(msg[_COMMAND.size :] or b"{}")
            return kind, slot, Command(CommandKind(ck), t, str(tail.get("target", "")), str(tail.get("reason", "")))
        if kind is MsgType.OPEN:
            _, _, key = _OPEN.unpack_from(msg)
            return kind, slot, key, SessionInfo(**json.loads(msg[_OPEN.size :]))
        _, _, key = _OPENED.unpack_from(msg)
        return kind, slot, key, msg[_OPENED.size :].decode()
    except (struct.error, ValueError, TypeError, UnicodeDecodeError) as exc:
        if isinstance(exc, WireError):
            raise
        raise WireError(f"undecodable message type {mtype}: {exc}") from exc
