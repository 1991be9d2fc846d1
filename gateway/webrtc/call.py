"""One WebRTC call: its peer connection, its media chain and what the worker knows about it."""

from __future__ import annotations

import asyncio
import enum
import json
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aiortc import RTCDataChannel, RTCPeerConnection
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from engine.logs import get_logger
from gateway.dialplan import DialplanEntry
from gateway.media.chain import CallMedia
from gateway.webrtc.audio import SILENCE, AgentTrack, InboundAudio

if TYPE_CHECKING:
    from structlog.typing import FilteringBoundLogger

STATE_EVERY_TICKS = 5  # the page's state display is refreshed at most every 100 ms


class Phase(enum.Enum):
    OFFERED = "offered"  # offer received, waiting for an engine slot
    ANSWERED = "answered"  # answer sent, ICE/DTLS connecting
    CONNECTED = "connected"  # media flowing: the agent has started
    ENDED = "ended"


@dataclass
class WebRtcCall:
    call_id: str
    entry: DialplanEntry
    caller: str
    pc: RTCPeerConnection | None = None
    key: int = 0
    slot: int | None = None
    media: CallMedia | None = None
    track: AgentTrack = field(default_factory=AgentTrack)
    inbound: InboundAudio = field(default_factory=InboundAudio)
    channel: RTCDataChannel | None = None
    reader: asyncio.Task[None] | None = None
    phase: Phase = Phase.OFFERED
    codec: str = ""
    offered_at: float = field(default_factory=time.monotonic)
    answered_at: float = 0.0
    connected_at: float = 0.0
    hold_since: float = 0.0
    held_by_offer: bool = False  # the last offer's audio direction was sendonly/inactive
    end_reason: str = ""
    ended_acked: bool = False  # the page said it got "ended"
    _sent_state: str = ""
    _ticks: int = 0
    log: "FilteringBoundLogger" = field(default_factory=get_logger)

    # -- media clock (the worker's loop, once per 20 ms) -------------------------------------
    def tick(self) -> None:
        media = self.media
        if media is None or self.phase is not Phase.CONNECTED:
            return
        media.inbound(self.inbound.pop() or SILENCE)
        pcm = media.outbound()
        if not media.on_hold:  # our answer said recvonly/inactive: no RTP while held
            self.track.put(pcm or SILENCE)
        self._ticks += 1
        if self._ticks % STATE_EVERY_TICKS == 0:
            self.send_state()

    def agent_state(self) -> str:
        m = self.media
        if m is None:
            return "connecting"
        if m.on_hold:
            return "on hold"
        return "speaking" if m.playout.speaking and not m.playout.paused else "listening"

    def send_state(self, force: bool = False) -> None:
        state = self.agent_state()
        caller_speaking = bool(self.media and self.media.vad.in_speech)
        key = f"{state}/{caller_speaking}"
        if key != self._sent_state or force:
            if self.send({"type": "state", "state": state, "caller_speaking": caller_speaking}):
                self._sent_state = key

    def send(self, message: dict[str, Any]) -> bool:
        ch = self.channel
        if ch is None or ch.readyState != "open":
            return False
        try:
            ch.send(json.dumps(message))
            return True
        except Exception:  # a closing SCTP association: the state feed is best effort
            return False

    async def tell_page_ended(self, timeout: float = 2.0) -> bool:
        """Send "ended" with the reason and wait (bounded) for the page's "ended_ack", or for
        the page to have gone (channel or connection no longer open). True if the page
        confirmed or left; False if it said nothing in `timeout` (a client without the ack).
        A call can end before the page's data channel is open (the engine lost in its first
        moments): the message then waits for the channel, within the same `timeout`."""
        deadline = time.monotonic() + timeout
        while not self._channel_open():
            if self._page_gone():
                return True
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(0.01)  # aiortc has no awaitable for a channel's opening either
        if not self.send({"type": "ended", "reason": self.end_reason}):
            return False
        while not self.ended_acked:
            if not self._channel_open() or self._page_gone():
                return True
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(0.01)  # the ack arrives on this loop; aiortc has no awaitable for it
        return True

    def _channel_open(self) -> bool:
        return self.channel is not None and self.channel.readyState == "open"

    def _page_gone(self) -> bool:
        """The peer connection closed or failed, or the page's channel closed."""
        pc, ch = self.pc, self.channel
        if pc is None or pc.connectionState not in ("new", "connecting", "connected"):
            return True
        return ch is not None and ch.readyState in ("closing", "closed")

    # -- caller audio ------------------------------------------------------------------------
    def read_track(self, track: MediaStreamTrack) -> None:
        if self.reader is None:
            self.reader = asyncio.ensure_future(self._read(track))

    async def _read(self, track: MediaStreamTrack) -> None:
        try:
            while True:
                frame = await track.recv()
                self.inbound.feed(frame)  # type: ignore[arg-type]
        except MediaStreamError:
            pass
        except Exception:
            self.log.exception("caller audio could not be read")

    def summary(self) -> dict[str, Any]:
        m = self.media
        return {
            "call_id": self.call_id,
            "transport": "webrtc",
            "called": self.entry.name,
            "caller": self.caller,
            "dialplan": self.entry.name,
            "phase": self.phase.value,
            "slot": self.slot,
            "codec": self.codec,
            "on_hold": bool(m and m.on_hold),
            "agent_state": self.agent_state(),
            "age_s": round(time.monotonic() - self.offered_at, 3),
            "frames_in": m.frames_in if m else 0,
            "frames_out": m.frames_out if m else 0,
            "underruns": m.playout.underruns if m else 0,
            "speech_starts": m.speech_starts if m else 0,
            "barge_in_pauses": m.barge_in_pauses if m else 0,
            "tick_gap": m.ticks.summary() if m else {},
            "inbound_gaps": self.inbound.gaps,
            "inbound_dropped": self.inbound.dropped,
            "outbound_dropped": self.track.dropped,
        }
