"""One SIP call: the pjsua2 Call subclass and what the worker knows about it.

pjsua2 callbacks here run on pjsua's threads and only record facts or do what pjsua2 wants
done inside the callback (connecting the media port when the media state changes); every
decision is the worker's control loop's.
"""

from __future__ import annotations

import enum
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import pjsua2 as pj

from engine.logs import get_logger
from gateway.dialplan import DialplanEntry
from gateway.media.chain import CallMedia
from gateway.media.port import FramePort
from gateway.sip.sdp import prefer_codec

if TYPE_CHECKING:
    from structlog.typing import FilteringBoundLogger

DTMF_IS_END = 1 << 1  # PJMEDIA_STREAM_DTMF_IS_END (IS_UPDATE is 1 << 0)


class Phase(enum.Enum):
    OFFERED = "offered"  # INVITE received, ringing, waiting for an engine slot
    ANSWERED = "answered"  # 200 sent, waiting for the ACK
    CONFIRMED = "confirmed"
    ENDED = "ended"


class LegOwner(Protocol):
    def on_call_state(self, leg: "CallLeg", state: int, code: int, reason: str) -> None: ...
    def on_media_state(self, leg: "CallLeg") -> None: ...
    def on_transferred(self, leg: "CallLeg") -> None: ...

    codecs: list[str]


@dataclass
class CallLeg:
    call: "SipCall"
    call_id: str
    called: str
    caller: str
    entry: DialplanEntry | None = None
    key: int = 0  # the worker's OPEN request key
    slot: int | None = None
    port: FramePort | None = None
    media: CallMedia | None = None
    phase: Phase = Phase.OFFERED
    offered_at: float = field(default_factory=time.monotonic)
    answered_at: float = 0.0
    confirmed_at: float = 0.0
    hold_since: float = 0.0
    codec: str = ""
    end_reason: str = ""
    transfer_sent: bool = False
    stats: dict[str, Any] = field(default_factory=dict)
    log: "FilteringBoundLogger" = field(default_factory=get_logger)

    def summary(self) -> dict[str, Any]:
        now = time.monotonic()
        m = self.media
        return {
            "call_id": self.call_id,
            "called": self.called,
            "caller": self.caller,
            "dialplan": self.entry.name if self.entry else "",
            "phase": self.phase.value,
            "slot": self.slot,
            "codec": self.codec,
            "on_hold": bool(m and m.on_hold),
            "age_s": round(now - self.offered_at, 3),
            "frames_in": m.frames_in if m else 0,
            "frames_out": m.frames_out if m else 0,
            "underruns": m.playout.underruns if m else 0,
            "speech_starts": m.speech_starts if m else 0,
            "barge_in_pauses": m.barge_in_pauses if m else 0,
            "tick_gap": m.ticks.summary() if m else {},
            "dsp_us": m.dsp.times.summary() if m else {},  # mean µs per frame per media stage
            "jitter": self.stats,
        }


class SipCall(pj.Call):  # type: ignore[misc]
    def __init__(self, owner: LegOwner, account: pj.Account, call_id: int = pj.PJSUA_INVALID_ID) -> None:
        super().__init__(account, call_id)
        self.owner = owner
        self.leg: CallLeg | None = None

    def onCallState(self, prm: pj.OnCallStateParam) -> None:
        if self.leg is None:
            return
        info = self.getInfo()
        self.owner.on_call_state(self.leg, info.state, info.lastStatusCode, info.lastReason)

    def onCallSdpCreated(self, prm: pj.OnCallSdpCreatedParam) -> None:
        if self.leg is not None and prm.remSdp.wholeSdp:
            prm.sdp.wholeSdp = prefer_codec(prm.sdp.wholeSdp, prm.remSdp.wholeSdp, self.owner.codecs)

    def onCallMediaState(self, prm: pj.OnCallMediaStateParam) -> None:
        leg = self.leg
        if leg is None or leg.port is None or leg.media is None:
            return
        info = self.getInfo()
        for mi in info.media:
            if mi.type != pj.PJMEDIA_TYPE_AUDIO:
                continue
            if mi.status in (pj.PJSUA_CALL_MEDIA_ACTIVE, pj.PJSUA_CALL_MEDIA_REMOTE_HOLD):
                # The call's conference slot changes on every re-INVITE: reconnect each time.
                am = self.getAudioMedia(mi.index)
                am.startTransmit(leg.port)
                leg.port.startTransmit(am)
            leg.media.hold(mi.status != pj.PJSUA_CALL_MEDIA_ACTIVE)
            break
        try:
            si = self.getStreamInfo(0)
            leg.codec = f"{si.codecName}/{si.codecClockRate}"
        except pj.Error:
            pass
        self.owner.on_media_state(leg)

    def onDtmfEvent(self, prm: pj.OnDtmfEventParam) -> None:
        leg = self.leg
        if leg is not None and leg.media is not None and prm.flags & DTMF_IS_END:
            leg.media.dtmf(prm.digit, int(prm.duration))
            leg.log.info("dtmf", digit=prm.digit, duration_ms=int(prm.duration))

    def onCallTransferStatus(self, prm: pj.OnCallTransferStatusParam) -> None:
        leg = self.leg
        if leg is None:
            return
        leg.log.info("transfer progress", status=prm.statusCode, reason=prm.reason, final=prm.finalNotify)
        if prm.finalNotify:
            prm.cont = False
            if 200 <= prm.statusCode < 300:
                self.owner.on_transferred(leg)
