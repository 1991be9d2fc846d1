"""Scriptable SIP test phone (pjsua2), run as its own process.

    python tests/support/phone.py --port 0 [--answer] [--ring-ms 0] [--codecs G722,PCMU,PCMA]

Reads JSON-lines commands on stdin and writes JSON-lines events on stdout (each object
has "event"). See tests/support/README.md for the protocol. Everything pjsua2-related
runs on the main thread; a reader thread only moves stdin lines into a queue.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import queue
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

import pjsua2 as pj

sys.path.insert(0, str(Path(__file__).resolve().parent))
from audio import read_wav, resample, write_wav  # noqa: E402
from phone_port import RATE, PhonePort  # noqa: E402

CODEC_IDS = {"G722": "G722/16000/1", "PCMU": "PCMU/8000/1", "PCMA": "PCMA/8000/1"}
STATE_NAMES = {
    pj.PJSIP_INV_STATE_NULL: "NULL",
    pj.PJSIP_INV_STATE_CALLING: "CALLING",
    pj.PJSIP_INV_STATE_INCOMING: "INCOMING",
    pj.PJSIP_INV_STATE_EARLY: "EARLY",
    pj.PJSIP_INV_STATE_CONNECTING: "CONNECTING",
    pj.PJSIP_INV_STATE_CONFIRMED: "CONFIRMED",
    pj.PJSIP_INV_STATE_DISCONNECTED: "DISCONNECTED",
}
MEDIA_STATUS = {
    pj.PJSUA_CALL_MEDIA_NONE: "NONE",
    pj.PJSUA_CALL_MEDIA_ACTIVE: "ACTIVE",
    pj.PJSUA_CALL_MEDIA_LOCAL_HOLD: "LOCAL_HOLD",
    pj.PJSUA_CALL_MEDIA_REMOTE_HOLD: "REMOTE_HOLD",
    pj.PJSUA_CALL_MEDIA_ERROR: "ERROR",
}
MEDIA_DIR = {
    pj.PJMEDIA_DIR_NONE: "inactive",
    pj.PJMEDIA_DIR_ENCODING: "sendonly",
    pj.PJMEDIA_DIR_DECODING: "recvonly",
    pj.PJMEDIA_DIR_ENCODING_DECODING: "sendrecv",
}
DTMF_IS_END = 1 << 1  # PJMEDIA_STREAM_DTMF_IS_END, not exported by the bindings


class Emitter:
    """Thread-safe JSON-lines writer on the real stdout.

    fd 1 is re-pointed at stderr so stray C-level output (pjlib logs, printf) cannot
    corrupt the protocol stream.
    """

    def __init__(self) -> None:
        self._out: TextIO = os.fdopen(os.dup(1), "w", buffering=1)
        sys.stdout.flush()
        os.dup2(2, 1)
        self._lock = threading.Lock()

    def __call__(self, event: str, **fields: Any) -> None:
        line = json.dumps({"event": event, **fields})
        with self._lock:
            self._out.write(line + "\n")
            self._out.flush()


class PhoneCall(pj.Call):
    def __init__(self, phone: Phone, acc: pj.Account, call_id: int = pj.PJSUA_INVALID_ID) -> None:
        super().__init__(acc, call_id)
        self.phone = phone
        self.connected_slot: int | None = None
        self.last_codec: tuple[str, int] | None = None
        self.dtmf_seen: set[int] = set()

    def onCallState(self, prm: pj.OnCallStateParam) -> None:
        self.phone.on_call_state(self)

    def onCallMediaState(self, prm: pj.OnCallMediaStateParam) -> None:
        self.phone.on_media_state(self)

    def onDtmfEvent(self, prm: pj.OnDtmfEventParam) -> None:
        # Called at start, on updates and at end; report each digit once, at its end.
        if prm.flags & DTMF_IS_END and prm.timestamp not in self.dtmf_seen:
            self.dtmf_seen.add(prm.timestamp)
            self.phone.emit("dtmf", digit=prm.digit, duration_ms=prm.duration)

    def onCallTransferRequest(self, prm: pj.OnCallTransferRequestParam) -> None:
        self.phone.on_transfer_request(prm)

    def onCallTransferStatus(self, prm: pj.OnCallTransferStatusParam) -> None:
        self.phone.emit(
            "transfer_status", code=int(prm.statusCode), reason=prm.reason, final=bool(prm.finalNotify)
        )


class PhoneAccount(pj.Account):
    def __init__(self, phone: Phone) -> None:
        super().__init__()
        self.phone = phone

    def onIncomingCall(self, prm: pj.OnIncomingCallParam) -> None:
        self.phone.on_incoming_call(prm)


class Phone:
    def __init__(self, args: argparse.Namespace, emit: Emitter) -> None:
        self.args = args
        self.emit = emit
        self.ep = pj.Endpoint()
        self.call: PhoneCall | None = None
        self.dead_calls: list[PhoneCall] = []  # released on the main loop, never in callbacks
        self.other_calls: list[PhoneCall] = []  # calls replaced by a followed REFER
        self.timers: list[tuple[float, Callable[[], None]]] = []
        self.running = True
        self._start_endpoint()

    # ---- setup / teardown ----

    def _start_endpoint(self) -> None:
        ep = self.ep
        ep.libCreate()
        cfg = pj.EpConfig()
        cfg.uaConfig.threadCnt = 0  # SIP events are polled by libHandleEvents on this thread
        cfg.uaConfig.mainThreadOnly = False
        # With a single call slot, pjsua accepts a REFER (202) but its attempt to dial the
        # target fails with PJ_ETOOMANY before any INVITE is sent (the transferor then
        # gets NOTIFY "500"). pjsua has no other way to accept a REFER without dialing.
        cfg.uaConfig.maxCalls = 1 if self.args.refer == "accept" else 4
        cfg.uaConfig.userAgent = "talkover-testphone"
        cfg.logConfig.consoleLevel = 0
        cfg.logConfig.level = 5 if self.args.log_file else 0
        if self.args.log_file:
            cfg.logConfig.filename = self.args.log_file
            cfg.logConfig.msgLogging = True
        med = cfg.medConfig
        med.clockRate = RATE
        med.sndClockRate = RATE
        med.channelCount = 1
        med.audioFramePtime = 20
        med.noVad = True
        med.ecTailLen = 0
        # pjsua closes an idle sound device after 1 s, and the null device is what clocks
        # the bridge. It only reopens it for connections to slot 0, which this phone never
        # makes, so without this the port stops getting callbacks a second after startup.
        med.sndAutoCloseTime = -1
        ep.libInit(cfg)

        tcfg = pj.TransportConfig()
        tcfg.port = self.args.port
        tcfg.boundAddress = self.args.host
        tid = ep.transportCreate(pj.PJSIP_TRANSPORT_UDP, tcfg)
        self.sip_port = int(ep.transportGetInfo(tid).localName.rsplit(":", 1)[1])
        ep.libStart()
        ep.audDevManager().setNullDev()
        self.set_codecs(self.args.codecs.split(","))

        acfg = pj.AccountConfig()
        acfg.idUri = f"sip:{self.args.user}@{self.args.host}:{self.sip_port}"
        acfg.sipConfig.transportId = tid
        acfg.mediaConfig.transportConfig.boundAddress = self.args.host
        acfg.mediaConfig.transportConfig.port = 0  # random free RTP port per call
        self.acc = PhoneAccount(self)
        self.acc.create(acfg)

        self.port = PhonePort(on_play_done=lambda: self.emit("play_done"))
        self.port.create()

    def shutdown(self) -> None:
        self.port.stop_play()
        self.ep.hangupAllCalls()
        deadline = time.monotonic() + 2.0  # let BYE/CANCEL go out and DISCONNECTED arrive
        while (self.call is not None or self.other_calls) and time.monotonic() < deadline:
            self.ep.libHandleEvents(10)
        self.call = None
        self.other_calls.clear()
        self.dead_calls.clear()
        self.acc.shutdown()
        del self.port
        del self.acc
        gc.collect()
        # Without NO_RX_MSG pjsua_destroy2() always sleeps ~1 s "for unregistration";
        # calls were already torn down above and there are no registrations.
        self.ep.libDestroy(pj.PJSUA_DESTROY_NO_RX_MSG)

    # ---- main loop ----

    def run(self, commands: queue.Queue[str | None]) -> None:
        next_gc = time.monotonic() + 1.0
        while self.running:
            self.ep.libHandleEvents(10)
            while True:
                try:
                    line = commands.get_nowait()
                except queue.Empty:
                    break
                if line is None:  # stdin closed: the driver is gone
                    self.running = False
                    break
                self.handle_line(line)
            now = time.monotonic()
            due = [t for t in self.timers if t[0] <= now]
            self.timers = [t for t in self.timers if t[0] > now]
            while due:  # no loop variable left holding a fired timer (and the Call it closes over)
                due.pop(0)[1]()
            if self.dead_calls:
                self.dead_calls.clear()
            if now >= next_gc:
                # Automatic GC is off: a collection on the bridge clock thread could run a
                # pjsua2 destructor there. Collect here instead.
                gc.collect()
                next_gc = now + 1.0

    def handle_line(self, line: str) -> None:
        try:
            msg = json.loads(line)
            cmd = msg.get("cmd")
            handler = getattr(self, f"cmd_{cmd}", None) if isinstance(cmd, str) else None
            if handler is None:
                raise ValueError(f"unknown command: {cmd!r}")
        except (ValueError, AttributeError) as exc:
            self.emit("error", message=str(exc), line=line.strip())
            return
        try:
            extra = handler(msg) or {}
        except Exception as exc:  # report every failure to the driver instead of dying
            self.emit("error", cmd=cmd, id=msg.get("id"), message=f"{type(exc).__name__}: {_err_text(exc)}")
            return
        self.emit("ok", cmd=cmd, id=msg.get("id"), **extra)

    # ---- commands ----

    def set_codecs(self, names: list[str]) -> None:
        unknown = [n for n in names if n.upper() not in CODEC_IDS]
        if unknown or not names:
            raise ValueError(f"unsupported codecs {unknown}; use {list(CODEC_IDS)}")
        for info in self.ep.codecEnum2():
            self.ep.codecSetPriority(info.codecId, 0)
        for rank, name in enumerate(names):
            self.ep.codecSetPriority(CODEC_IDS[name.upper()], 255 - rank)

    def _require_call(self) -> PhoneCall:
        if self.call is None:
            raise RuntimeError("no active call")
        return self.call

    def cmd_call(self, msg: dict[str, Any]) -> dict[str, Any]:
        if self.call is not None:
            raise RuntimeError("a call is already in progress")
        if "codecs" in msg:
            self.set_codecs(list(msg["codecs"]))
        prm = pj.CallOpParam(True)
        for name, value in (msg.get("headers") or {}).items():
            hdr = pj.SipHeader()
            hdr.hName = str(name)
            hdr.hValue = str(value)
            prm.txOption.headers.append(hdr)
        call = PhoneCall(self, self.acc)
        self.call = call
        try:
            call.makeCall(str(msg["uri"]), prm)
        except pj.Error:
            self.call = None
            self.dead_calls.append(call)
            raise
        return {"call_id": call.getInfo().callIdString}

    def cmd_answer(self, msg: dict[str, Any]) -> None:
        self._answer(int(msg.get("code", 200)))

    def cmd_hangup(self, msg: dict[str, Any]) -> None:
        prm = pj.CallOpParam(True)
        if "code" in msg:
            prm.statusCode = int(msg["code"])
        self._require_call().hangup(prm)

    def cmd_play(self, msg: dict[str, Any]) -> dict[str, Any]:
        samples, rate = read_wav(msg["wav"])
        samples = resample(samples, rate, RATE)
        self.port.play(samples, bool(msg.get("loop", False)))
        return {"seconds": len(samples) / RATE}

    def cmd_stop_play(self, msg: dict[str, Any]) -> dict[str, Any]:
        return {"was_playing": self.port.stop_play()}

    def cmd_record_start(self, msg: dict[str, Any]) -> None:
        self.port.record_start()

    def cmd_record_stop(self, msg: dict[str, Any]) -> dict[str, Any]:
        pcm = self.port.record_stop()
        if pcm is None:
            raise RuntimeError("not recording")
        import numpy as np

        write_wav(msg["path"], np.frombuffer(pcm, dtype="<i2"), RATE)
        return {"path": msg["path"], "seconds": len(pcm) / 2 / RATE}

    def cmd_echo(self, msg: dict[str, Any]) -> None:
        if msg.get("enabled", True) is False:
            self.port.stop_echo()
        else:
            self.port.set_echo(float(msg.get("delay_ms", 0.0)), float(msg.get("gain_db", -20.0)))

    def cmd_dtmf(self, msg: dict[str, Any]) -> None:
        self._require_call().dialDtmf(str(msg["digits"]))

    def cmd_hold(self, msg: dict[str, Any]) -> None:
        mode = msg.get("mode", "sendonly")
        dirs = {"sendonly": pj.PJMEDIA_DIR_ENCODING, "inactive": pj.PJMEDIA_DIR_NONE}
        if mode not in dirs:
            raise ValueError(f"hold mode must be sendonly or inactive, not {mode!r}")
        self._reinvite_dir(dirs[mode])

    def _reinvite_dir(self, direction: int) -> None:
        # Call.setHold() would also work for sendonly, but its local-hold flag and a
        # CallSetting.mediaDir (which persists across offers) interact: after an
        # inactive hold, setHold() still offers a=inactive. Setting the direction
        # explicitly (with UNHOLD to clear the flag) gives exactly the requested SDP.
        prm = pj.CallOpParam(True)
        prm.opt.flag |= pj.PJSUA_CALL_UNHOLD | pj.PJSUA_CALL_SET_MEDIA_DIR
        prm.opt.mediaDir = pj.IntVector([direction])
        self._require_call().reinvite(prm)

    def cmd_unhold(self, msg: dict[str, Any]) -> None:
        self._reinvite_dir(pj.PJMEDIA_DIR_ENCODING_DECODING)

    def cmd_transfer(self, msg: dict[str, Any]) -> None:
        """Send a REFER (blind transfer) to the remote party."""
        self._require_call().xfer(str(msg["target"]), pj.CallOpParam(True))

    def cmd_stats(self, msg: dict[str, Any]) -> None:
        state = "IDLE"
        if self.call is not None:
            state = STATE_NAMES.get(self.call.getInfo().state, "UNKNOWN")
        self.emit("stats", call_state=state, **self.port.stats())

    def cmd_codecs(self, msg: dict[str, Any]) -> None:
        self.set_codecs(list(msg["codecs"]))

    def cmd_quit(self, msg: dict[str, Any]) -> None:
        self.running = False

    # ---- pjsua2 callbacks (main thread, from libHandleEvents) ----

    def on_incoming_call(self, prm: pj.OnIncomingCallParam) -> None:
        call = PhoneCall(self, self.acc, prm.callId)
        if self.call is not None:
            busy = pj.CallOpParam(True)
            busy.statusCode = 486
            call.hangup(busy)
            self.dead_calls.append(call)
            return
        self.call = call
        ci = call.getInfo()
        self.emit(
            "incoming_call",
            remote_uri=ci.remoteUri,
            local_uri=ci.localUri,
            call_id=ci.callIdString,
            invite=prm.rdata.wholeMsg,
        )
        ringing = pj.CallOpParam(True)
        ringing.statusCode = 180
        call.answer(ringing)
        if self.args.answer:
            when = time.monotonic() + self.args.ring_ms / 1000.0
            target = call
            self.timers.append((when, lambda: self._answer(self.args.answer_code, target)))

    def _answer(self, code: int, only: PhoneCall | None = None) -> None:
        call = self._require_call()
        if only is not None and call is not only:
            return  # the ring timer outlived its call
        info = call.getInfo()
        if info.state not in (pj.PJSIP_INV_STATE_INCOMING, pj.PJSIP_INV_STATE_EARLY):
            return
        prm = pj.CallOpParam(True)
        prm.statusCode = code
        if code >= 300:
            call.hangup(prm)
        else:
            call.answer(prm)

    def on_call_state(self, call: PhoneCall) -> None:
        ci = call.getInfo()
        self.emit(
            "call_state",
            call_id=ci.callIdString,
            state=STATE_NAMES.get(ci.state, str(ci.state)),
            last_status_code=int(ci.lastStatusCode),
            reason=ci.lastReason,
        )
        if ci.state == pj.PJSIP_INV_STATE_DISCONNECTED:
            if self.call is call:
                self.call = None
            if call in self.other_calls:
                self.other_calls.remove(call)
            self.dead_calls.append(call)

    def on_media_state(self, call: PhoneCall) -> None:
        ci = call.getInfo()
        for i, media in enumerate(ci.media):
            if media.type != pj.PJMEDIA_TYPE_AUDIO:
                continue
            status = MEDIA_STATUS.get(media.status, str(media.status))
            self.emit("media_state", index=i, status=status, dir=MEDIA_DIR.get(media.dir, str(media.dir)))
            if media.status in (pj.PJSUA_CALL_MEDIA_ACTIVE, pj.PJSUA_CALL_MEDIA_REMOTE_HOLD, pj.PJSUA_CALL_MEDIA_LOCAL_HOLD):
                self._connect_audio(call, i)

    def _connect_audio(self, call: PhoneCall, index: int) -> None:
        am = call.getAudioMedia(index)
        slot = am.getPortId()
        if call.connected_slot != slot:
            am.startTransmit(self.port)
            self.port.startTransmit(am)
            call.connected_slot = slot
        si = call.getStreamInfo(index)
        codec = (si.codecName, int(si.codecClockRate))
        if codec != call.last_codec:
            call.last_codec = codec
            self.emit("codec", name=codec[0], clock_rate=codec[1], tx_pt=si.txPt, rx_pt=si.rxPt)

    def on_transfer_request(self, prm: pj.OnCallTransferRequestParam) -> None:
        self.emit("transfer_request", target=prm.dstUri, mode=self.args.refer)
        if self.args.refer == "reject":
            prm.statusCode = 603
        elif self.args.refer == "follow":
            # pjsua dials the target itself once we return; give it a fresh Call object
            # (otherwise pjsua2 re-binds *this* Python object to the new call).
            new = PhoneCall(self, self.acc)
            prm.newCall = new
            if self.call is not None:
                self.other_calls.append(self.call)
            self.call = new


def _err_text(exc: Exception) -> str:
    if isinstance(exc, pj.Error):
        return f"{exc.title}: {exc.reason}"
    return str(exc)


def _read_stdin(commands: queue.Queue[str | None]) -> None:
    for line in sys.stdin:
        if line.strip():
            commands.put(line)
    commands.put(None)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--port", type=int, default=0, help="SIP UDP port (0 = any free)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--user", default="phone", help="user part of the local SIP URI")
    p.add_argument("--answer", action="store_true", help="auto-answer incoming calls")
    p.add_argument("--ring-ms", type=int, default=0, help="ringing time before auto-answer")
    p.add_argument("--answer-code", type=int, default=200, help="final response for auto-answer")
    p.add_argument("--codecs", default="G722,PCMU,PCMA", help="codec preference for offers and answers")
    p.add_argument("--refer", choices=["accept", "reject", "follow"], default="accept")
    p.add_argument("--log-file", default="", help="pjsua log (level 5, with SIP messages)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    emit = Emitter()
    gc.disable()
    commands: queue.Queue[str | None] = queue.Queue()
    phone = Phone(args, emit)
    threading.Thread(target=_read_stdin, args=(commands,), daemon=True, name="stdin").start()
    emit("ready", port=phone.sip_port, uri=f"sip:{args.user}@{args.host}:{phone.sip_port}")
    try:
        phone.run(commands)
    finally:
        phone.shutdown()
        emit("exited")
    return 0


if __name__ == "__main__":
    code = main()
    # Skip interpreter teardown: SWIG finalizers after libDestroy() can crash.
    os._exit(code)
