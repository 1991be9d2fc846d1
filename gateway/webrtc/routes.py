"""The WebRTC worker's signalling routes (forwarded by the supervisor, see __init__.py) and
the caller's data-channel messages. Nothing a caller sends can raise out of here: bad input
gets a 4xx and a reason, a failing aiortc call a 400, capacity a 503 with Retry-After."""

from __future__ import annotations

import asyncio
import json
import re
import time
import uuid
from typing import TYPE_CHECKING, Any

from aiortc import RTCPeerConnection, RTCSessionDescription

from engine import wire
from engine.logs import get_logger
from engine.session import SessionInfo
from gateway import metrics
from gateway.media.chain import CallMedia
from gateway.webrtc import metrics as rtc_metrics
from gateway.webrtc.call import Phase, WebRtcCall
from gateway.webrtc.ice import rtc_configuration
from gateway.webrtc.offer import Offer, OfferError, answer_codec, ipaddress_is_loopback, loopback_candidates_only, parse_offer
from gateway.webrtc.signalling import SignalReply, SignalRequest

if TYPE_CHECKING:
    from gateway.webrtc.worker import WebRtcWorker

log = get_logger(component="webrtc")
_CALL_PATH = re.compile(r"^/webrtc/calls/([A-Za-z0-9_-]{1,80})/(offer|hangup|dtmf)$")
DTMF_DIGITS = "0123456789*#ABCD"
NEGOTIATION_TIMEOUT_S = 10.0


class Routes:
    def __init__(self, worker: "WebRtcWorker") -> None:
        self.w = worker

    async def dispatch(self, req: SignalRequest) -> SignalReply:
        if req.method != "POST":
            return SignalReply(405, {"error": "use POST"})
        if req.path == "/webrtc/offer":
            return await self.offer(req)
        m = _CALL_PATH.match(req.path)
        if m is None:
            return SignalReply(404, {"error": f"no such path: {req.path}"})
        call = self.w.calls.get(m.group(1))
        if call is None or call.phase is Phase.ENDED:
            return SignalReply(404, {"error": "no such call (ended or never existed)"})
        if m.group(2) == "offer":
            return await self.reoffer(call, req)
        if m.group(2) == "hangup":
            await self.w.end(call, "caller hung up")
            return SignalReply(200, {"ended": True})
        try:
            body = json.loads(req.body or "{}")
            digit, duration = check_dtmf(body)
        except (ValueError, TypeError) as exc:
            return SignalReply(400, {"error": str(exc)})
        self.w.dtmf(call, digit, duration)
        return SignalReply(200, {"digit": digit})

    # -- a new call -------------------------------------------------------------------------------
    async def offer(self, req: SignalRequest) -> SignalReply:
        w, wcfg = self.w, self.w.cfg.webrtc
        try:
            offer = parse_offer(req.body, wcfg.max_offer_bytes)
        except OfferError as exc:
            rtc_metrics.OFFERS.labels("bad_offer").inc()
            return SignalReply(exc.status, {"error": str(exc)})
        if w.draining_since:
            return self._busy("the gateway is shutting down (draining)")
        if len(w.calls) >= wcfg.max_calls:
            return self._busy(f"all {wcfg.max_calls} WebRTC lines are busy")
        name = req.query.get("entry") or offer.entry
        entry = w.dialplan.by_name(name) if name else w.dialplan.route(wcfg.default_called)
        if entry is None:
            rtc_metrics.OFFERS.labels("not_found").inc()
            return SignalReply(404, {"error": f"no dialplan entry named {name!r}" if name else "no dialplan entry"})
        if not w.link.connected:
            return self._busy("the engine is unavailable")
        call = WebRtcCall(f"webrtc-{uuid.uuid4().hex}", entry, caller=f"web:{req.peer}")
        call.log = get_logger(call_id=call.call_id)
        w.calls[call.call_id] = call
        w.has_calls.set()
        metrics.CALLS_ACTIVE.inc()
        call.log.info("offer", entry=entry.name, caller=call.caller, direction=offer.audio_direction)
        try:
            sdp = await self._answer(call, offer)
        except OfferError as exc:
            outcome = "rejected" if exc.status == 503 else "bad_offer"
            rtc_metrics.OFFERS.labels(outcome).inc()
            call.log.info("offer refused", status=exc.status, reason=str(exc))
            await w.end(call, str(exc), outcome="rejected")
            return SignalReply(exc.status, {"error": str(exc)}, retry_after_s=5 if exc.status == 503 else 0)
        except BaseException:
            await w.end(call, "internal error while answering")  # never a leaked slot or peer connection
            raise
        rtc_metrics.OFFERS.labels("answered").inc()
        return SignalReply(200, {"type": "answer", "sdp": sdp, "call_id": call.call_id})

    async def _answer(self, call: WebRtcCall, offer: Offer) -> str:
        w = self.w
        call.pc = pc = RTCPeerConnection(rtc_configuration(w.cfg.webrtc))
        rtc_metrics.PEER_CONNECTIONS.inc()
        self._watch(call, pc)
        pc.addTrack(call.track)
        await self._negotiate(pc, offer.sdp, answer=False)  # a hostile SDP fails here, before the engine
        call.slot = await self._open_slot(call)
        sdp = await self._negotiate(pc, offer.sdp, answer=True)
        if call.phase is Phase.ENDED:
            raise OfferError(503, "the call ended while it was being answered")
        # Off the loop: the chain's first construction loads its DSP models (~2 s cold).
        call.media = await asyncio.to_thread(CallMedia, call.slot, w.link, w.cfg.media, call.entry, call.call_id)
        if call.phase is Phase.ENDED:
            call.media.close()
            raise OfferError(503, "the call ended while it was being answered")
        w.by_slot[call.slot] = call
        call.held_by_offer = offer.holds
        call.codec = answer_codec(sdp)
        call.phase, call.answered_at = Phase.ANSWERED, time.monotonic()
        if pc.connectionState == "connected":
            w.connected(call)
        return sdp

    async def _negotiate(self, pc: RTCPeerConnection, sdp: str, answer: bool) -> str:
        own = self.w.cfg.webrtc.host_addresses
        if own and all(ipaddress_is_loopback(a) for a in own):
            sdp = loopback_candidates_only(sdp)
        try:
            if not answer:
                await asyncio.wait_for(pc.setRemoteDescription(RTCSessionDescription(sdp, "offer")), NEGOTIATION_TIMEOUT_S)
                return ""
            await asyncio.wait_for(pc.setLocalDescription(await pc.createAnswer()), NEGOTIATION_TIMEOUT_S)
        except asyncio.TimeoutError:
            raise OfferError(503, "ICE candidate gathering timed out") from None
        except Exception as exc:  # aiortc's parser and negotiation raise many kinds
            raise OfferError(400, f"the offer was refused: {type(exc).__name__}: {exc}"[:300]) from None
        return pc.localDescription.sdp

    async def _open_slot(self, call: WebRtcCall) -> int:
        w = self.w
        assert w.loop is not None
        call.key = next(w.keys)
        fut: asyncio.Future[tuple[int, str]] = w.loop.create_future()
        w.pending_open[call.key] = fut
        entry = call.entry
        info = SessionInfo(call.call_id, entry.name, call.caller, entry.agent_settings(), transport="webrtc")
        if not w.link.send_essential(wire.encode_open(call.key, info)):
            w.pending_open.pop(call.key, None)
            raise OfferError(503, "the engine is unavailable")
        try:
            slot, reason = await asyncio.wait_for(fut, w.cfg.engine.open_timeout_s)
        except asyncio.TimeoutError:
            w.pending_open.pop(call.key, None)
            raise OfferError(503, "the engine did not grant a session in time") from None
        if slot == wire.NO_SLOT:
            raise OfferError(503, f"engine: {reason or 'no free slot'}")
        if call.phase is Phase.ENDED:
            w.release_slot(slot)
            raise OfferError(503, "the call ended while it was being answered")
        return slot

    def _watch(self, call: WebRtcCall, pc: RTCPeerConnection) -> None:
        w = self.w

        @pc.on("connectionstatechange")
        async def on_state() -> None:
            state = pc.connectionState
            call.log.info("connection state", state=state)
            if state == "connected":
                w.connected(call)
            elif state in ("failed", "closed"):
                await w.end(call, f"peer connection {state}")

        @pc.on("track")
        def on_track(track: Any) -> None:
            if track.kind == "audio":
                call.read_track(track)

        @pc.on("datachannel")
        def on_channel(channel: Any) -> None:
            call.channel = channel
            channel.on("message", lambda message: self.channel_message(call, message))
            call.send_state(force=True)

    def _busy(self, why: str) -> SignalReply:
        rtc_metrics.OFFERS.labels("busy").inc()
        log.info("offer refused", status=503, reason=why)
        return SignalReply(503, {"error": why}, retry_after_s=5)

    # -- a live call ------------------------------------------------------------------------------
    async def reoffer(self, call: WebRtcCall, req: SignalRequest) -> SignalReply:
        try:
            offer = parse_offer(req.body, self.w.cfg.webrtc.max_offer_bytes)
        except OfferError as exc:
            return SignalReply(exc.status, {"error": str(exc)})
        if call.pc is None or call.phase not in (Phase.ANSWERED, Phase.CONNECTED):
            return SignalReply(409, {"error": "the call is not answered yet"})
        try:
            await self._negotiate(call.pc, offer.sdp, answer=False)
            sdp = await self._negotiate(call.pc, offer.sdp, answer=True)
        except OfferError as exc:
            call.log.warning("re-offer refused", reason=str(exc))
            return SignalReply(400 if exc.status != 503 else 503, {"error": str(exc)})
        call.held_by_offer = offer.holds
        call.log.info("re-offer", direction=offer.audio_direction)
        self.w.apply_hold(call)
        return SignalReply(200, {"type": "answer", "sdp": sdp, "on_hold": offer.holds})

    def channel_message(self, call: WebRtcCall, message: object) -> None:
        try:
            if not isinstance(message, str) or len(message) > 1000:
                raise ValueError("messages are JSON text of at most 1000 characters")
            body = json.loads(message)
            if not isinstance(body, dict):
                raise ValueError("a message is a JSON object")
            kind = body.get("type")
            if kind == "dtmf":
                self.w.dtmf(call, *check_dtmf(body))
            elif kind == "hangup":
                asyncio.ensure_future(self.w.end(call, "caller hung up"))
            elif kind == "ended_ack":
                call.ended_acked = True
            else:
                raise ValueError(f"unknown message type {kind!r}")
        except (ValueError, TypeError) as exc:
            call.log.warning("bad data-channel message ignored", error=str(exc))


def check_dtmf(body: Any) -> tuple[str, int]:
    if not isinstance(body, dict):
        raise ValueError("a DTMF request is a JSON object")
    digit, duration = body.get("digit"), body.get("duration_ms", 100)
    if not isinstance(digit, str) or len(digit) != 1 or digit.upper() not in DTMF_DIGITS:
        raise ValueError(f"digit must be one of {DTMF_DIGITS}")
    if not isinstance(duration, int) or isinstance(duration, bool) or not 0 < duration <= 10000:
        raise ValueError("duration_ms must be an integer 1-10000")
    return digit.upper(), duration
