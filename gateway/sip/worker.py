"""A gateway worker: one pjsua2 process taking up to pjsua_call_get_max_count() calls.

It does SIP, RTP, jitter buffering and the per-call DSP, nothing else CPU-bound (a busy
Python thread here stalls pjsua2's media clock). The engine is another process reached
through gateway/engine_link.py. pjsua2 callbacks record facts and queue actions; the
control loop (this process's main thread, registered with pjsua) makes every decision:
answer, reject, hang up, transfer, time out, drain.

Run by the supervisor: `python -m gateway.sip.worker --config RESOLVED.json --status-fd N`.
"""

from __future__ import annotations

import gc
import itertools
import os
import queue
import re
import signal
import sys
import threading
import time
from typing import Callable

import pjsua2 as pj

from engine import wire
from engine.logs import get_logger
from engine.signals import SignalLatch
from engine.session import CommandKind, EventKind, SessionEvent, SessionInfo
from gateway import metrics
from gateway.config import Config
from gateway.dialplan import Dialplan, load_dialplan
from gateway.engine_link import EngineLink
from gateway.media.chain import CallMedia, warm_media_chain
from gateway.media.port import FramePort, TickEndPort
from gateway.media.vad_batch import SileroBatch
from gateway.sip.account import GatewayAccount, create_accounts
from gateway.sip.call import CallLeg, Phase, SipCall
from gateway.sip.endpoint import SipEndpoint, pjsua_max_calls
from gateway.sip.flood import FloodGuard
from gateway.sip.stats import read_stream_stats, record_call_stats
from gateway.worker_process import StatusPipe, exit_skipping_finalisers, route_engine_message, worker_args

log = get_logger(component="worker")
_REQUEST_USER = re.compile(r"^\S+\s+(?:sips?:|tel:)([^@;>\s]+)")
TICK_S = 0.02


def called_user(whole_msg: str) -> str:
    m = _REQUEST_USER.match(whole_msg)
    return m.group(1) if m else ""


class Worker:
    def __init__(self, cfg: Config, dialplan: Dialplan, name: str, status_fd: int | None) -> None:
        self.cfg, self.dialplan, self.name = cfg, dialplan, name
        self.max_calls = 0  # known once pjsua is initialised
        self.codecs = cfg.sip.codecs
        self.sip = SipEndpoint(cfg.sip, self._rejected_by_pjsua)
        self.link = EngineLink(cfg.engine_socket(), self._on_engine_message, self._on_engine_state)
        self.actions: queue.Queue[Callable[[], None]] = queue.Queue()
        self.legs: dict[str, CallLeg] = {}
        self.by_key: dict[int, CallLeg] = {}
        self.by_slot: dict[int, CallLeg] = {}
        self.free_ports: list[FramePort] = []
        self._tick_end: TickEndPort | None = None
        self.vad_batch: SileroBatch | None = None
        self.accounts: list[GatewayAccount] = []
        self.flood = FloodGuard(cfg.sip.flood)
        self._keys = itertools.count(1)
        self._status = StatusPipe(status_fd)
        self.draining_since = 0.0
        self._stop = SignalLatch()  # SIGTERM / SIGINT: drain (the handler itself only latches)
        self._next_status = 0.0

    # -- lifecycle ----------------------------------------------------------------------
    def run(self) -> int:
        # Before any SIP transport exists: loading the DSP models takes ~1.5 s, and an INVITE
        # (or a dispatcher's OPTIONS) arriving meanwhile would find no account.
        warm_media_chain(self.cfg.media)
        self.sip.start()
        self.max_calls = min(self.cfg.sip.max_calls, pjsua_max_calls())
        # No loop variable may outlive _shutdown(): a FramePort still referenced after
        # libDestroy() aborts the process in pjmedia_conf_remove_port.
        ports = [self._new_port(i) for i in range(self.max_calls)]
        self.free_ports = list(ports)
        self._start_vad_batch(ports)
        self.accounts = create_accounts(self.cfg.sip, self._on_incoming)
        self.link.start()
        # Everything made so far lives as long as the process: freezing it keeps the
        # once-a-second collection at ~0 ms instead of ~80 ms with the GIL held (a media
        # clock stall of that length every second).
        gc.collect()
        gc.freeze()
        log.info("worker ready", name=self.name, max_calls=self.max_calls, pjsua_cap=pjsua_max_calls())
        self._stop.install(signal.SIGTERM, signal.SIGINT)
        while self._loop_once():
            pass
        self._shutdown(ports)
        return 0

    def _new_port(self, index: int) -> FramePort:
        port = FramePort(f"{self.name}-slot{index}")
        port.create()
        return port

    def _start_vad_batch(self, ports: list[FramePort]) -> None:
        if not (self.cfg.media.vad_batch and self.cfg.media.vad == "silero"):
            return
        tick_end = TickEndPort(f"{self.name}-tick-end", SileroBatch())
        tick_end.create()
        self._tick_end = tick_end
        if tick_end.last_of(ports):
            self.vad_batch = tick_end.batch
        else:  # not called last in a tick: the batch would run a tick late, so none
            tick_end.batch = None
            log.warning("the tick-end port is not the bridge's last slot: VAD runs per call")

    def drain(self) -> None:
        if not self.draining_since:
            self.draining_since = time.monotonic()
            log.info("draining: new calls get 503", live_calls=len(self.legs), drain_s=self.cfg.supervisor.drain_s)

    def _run_actions(self, timeout: float) -> None:
        try:
            self.actions.get(timeout=timeout)()
            while True:
                self.actions.get_nowait()()
        except queue.Empty:
            pass

    def _loop_once(self) -> bool:
        self._run_actions(TICK_S)
        if self._stop.is_set:
            self.drain()
        self.link.flush_backlog()
        now = time.monotonic()
        self._timers(now)
        if now >= self._next_status:
            self._next_status = now + 1.0
            self._report_status()
            gc.collect()  # here, not on the clock thread: see main()
        if self.draining_since:
            over = now - self.draining_since > self.cfg.supervisor.drain_s
            if over:
                for leg in list(self.legs.values()):
                    if leg.phase is not Phase.ENDED:
                        self._hangup(leg, "drain window over")
            return bool(self.legs) and now - self.draining_since < self.cfg.supervisor.drain_s + 5
        return True

    def _shutdown(self, ports: list[FramePort]) -> None:
        """Every pjsua2 object must be gone before libDestroy(), and no frame callback may
        run while a port is destroyed: either aborts the process."""
        self.sip.ep.hangupAllCalls()
        deadline = time.monotonic() + 3.0
        while self.legs and time.monotonic() < deadline:  # let the DISCONNECTED callbacks land
            self._run_actions(0.05)
        self.sip.stop_media_clock()
        _detach(ports)  # no loop variable here: it would keep a port alive past libDestroy
        self.link.stop()
        while not self.actions.empty():  # queued closures hold calls
            self.actions.get_nowait()
        for leg in self.legs.values():
            leg.call.leg = None
        self.legs.clear()
        self.by_key.clear()
        self.by_slot.clear()
        for acc in self.accounts:
            acc.shutdown()
        self.accounts.clear()
        self.free_ports.clear()
        ports.clear()
        if self._tick_end is not None:
            self._tick_end.batch = None
        self._tick_end = self.vad_batch = None
        gc.collect()
        self.sip.destroy()
        log.info("worker stopped", name=self.name)

    # -- SIP: pjsua threads ----------------------------------------------------------------
    def _on_incoming(self, account: GatewayAccount, prm: pj.OnIncomingCallParam) -> None:
        call = SipCall(self, account, prm.callId)
        info = call.getInfo()
        leg = CallLeg(call, info.callIdString, called_user(prm.rdata.wholeMsg), info.remoteUri)
        leg.log = get_logger(call_id=leg.call_id)
        call.leg = leg
        self.legs[leg.call_id] = leg
        metrics.CALLS_ACTIVE.inc()
        leg.log.info("incoming call", called=leg.called, caller=leg.caller, source=prm.rdata.srcAddress)
        live = sum(1 for other in list(self.legs.values()) if other.phase is not Phase.ENDED)
        if self.draining_since:
            return self._reject(leg, 503, "draining")
        if not self.flood.admit(str(prm.rdata.srcAddress)):
            return self._reject(leg, 503, "flood limit")
        if live > self.max_calls:
            return self._reject(leg, 503, "call limit")
        leg.entry = self.dialplan.route(leg.called)
        if leg.entry is None:
            return self._reject(leg, 404, "no dialplan entry")
        if not self.link.connected:
            return self._reject(leg, 503, "engine unavailable")
        leg.key = next(self._keys)
        self.by_key[leg.key] = leg
        self._answer(leg, 180)
        info_msg = SessionInfo(leg.call_id, leg.called, leg.caller, leg.entry.agent_settings())
        if not self.link.send_essential(wire.encode_open(leg.key, info_msg)):
            self._reject(leg, 503, "engine unavailable")

    def on_call_state(self, leg: CallLeg, state: int, code: int, reason: str) -> None:
        if state == pj.PJSIP_INV_STATE_CONFIRMED:
            self.actions.put(lambda: self._confirmed(leg))
        elif state == pj.PJSIP_INV_STATE_DISCONNECTED:
            self.actions.put(lambda: self._ended(leg, code, reason))

    def on_media_state(self, leg: CallLeg) -> None:
        leg.log.info("media", codec=leg.codec, on_hold=bool(leg.media and leg.media.on_hold))
        if leg.media and leg.media.on_hold:
            self.actions.put(lambda: self._held(leg))

    def on_transferred(self, leg: CallLeg) -> None:
        self.actions.put(lambda: self._hangup(leg, "transferred"))

    def _rejected_by_pjsua(self, code: int, reason: str) -> None:
        metrics.REJECTED_AT_CAP.inc()
        log.warning("pjsua rejected an INVITE itself (call cap)", status=code, reason=reason)

    # -- engine: link thread -----------------------------------------------------------------
    def _on_engine_message(self, msg: wire.Decoded) -> None:
        route_engine_message(
            msg,
            self.by_slot.get,
            lambda leg, cmd: self.actions.put(lambda: self._engine_command(leg, cmd)),
            lambda key, slot, reason: self.actions.put(lambda: self._slot_granted(key, slot, reason)),
        )

    def _on_engine_state(self, up: bool) -> None:
        metrics.ENGINE_CONNECTED.set(1 if up else 0)
        if not up:
            self.actions.put(self._engine_lost)

    # -- control loop -----------------------------------------------------------------------
    def _slot_granted(self, key: int, slot: int, reason: str) -> None:
        leg = self.by_key.pop(key, None)
        if slot == wire.NO_SLOT:
            if leg is not None and leg.phase is Phase.OFFERED:
                self._reject(leg, 503, f"engine: {reason or 'no free slot'}")
            return
        if leg is None or leg.phase is not Phase.OFFERED:
            self._release_slot(slot)  # the call ended while the engine was granting it
            return
        leg.slot = slot
        self._answer_if_rung(leg, time.monotonic())

    def _answer_if_rung(self, leg: CallLeg, now: float) -> None:
        assert leg.entry is not None and leg.slot is not None
        if now - leg.offered_at < leg.entry.ring_ms / 1000:
            return
        port = self.free_ports.pop()
        leg.media = CallMedia(leg.slot, self.link, self.cfg.media, leg.entry, leg.call_id, self.vad_batch)
        leg.port, port.media = port, leg.media
        self.by_slot[leg.slot] = leg
        leg.phase, leg.answered_at = Phase.ANSWERED, now
        self._answer(leg, 200)

    def _confirmed(self, leg: CallLeg) -> None:
        if leg.phase is Phase.ANSWERED and leg.media is not None:
            leg.phase, leg.confirmed_at = Phase.CONFIRMED, time.monotonic()
            leg.media.start()
            metrics.CALLS.labels("answered").inc()
            leg.log.info("call confirmed", codec=leg.codec, slot=leg.slot)

    def _held(self, leg: CallLeg) -> None:
        leg.hold_since = time.monotonic()
        if leg.entry is not None and leg.entry.on_hold == "hangup":
            self._hangup(leg, "hold: dialplan says hang up")

    def _ended(self, leg: CallLeg, code: int, reason: str) -> None:
        if leg.phase is Phase.ENDED:
            return
        was = leg.phase
        leg.phase = Phase.ENDED
        self.legs.pop(leg.call_id, None)
        self.by_key.pop(leg.key, None)
        metrics.CALLS_ACTIVE.dec()
        if leg.media is not None:
            leg.media.close()
            metrics.UNDERRUNS.inc(leg.media.playout.underruns)
        if leg.port is not None:
            leg.port.media = None
            self.free_ports.append(leg.port)
        elif leg.slot is not None:
            self._release_slot(leg.slot)
        if leg.slot is not None:
            self.by_slot.pop(leg.slot, None)
        if was is Phase.CONFIRMED:
            metrics.CALL_DURATION.observe(time.monotonic() - leg.confirmed_at)
        elif was is Phase.ANSWERED:
            # pjsip sends no BYE before the ACK (RFC 3261 15); the INVITE transaction's
            # timeout (64*T1 = 32 s) ends the call with a BYE, Reason: SIP;cause=408.
            leg.end_reason = leg.end_reason or "no ACK after 200: torn down at the INVITE transaction timeout"
            leg.log.warning("no ACK after 200", waited_s=round(time.monotonic() - leg.answered_at, 1))
            metrics.CALLS.labels("no_ack").inc()
        elif not leg.end_reason:
            outcome = "cancelled" if code == 487 else "failed"
            metrics.CALLS.labels(outcome).inc()
        record_call_stats(leg.stats)
        leg.log.info("call ended", status=code, reason=leg.end_reason or reason, was=was.value, **leg.summary())
        leg.call.leg = None

    def _timers(self, now: float) -> None:
        for leg in list(self.legs.values()):
            entry = leg.entry
            if leg.phase is Phase.OFFERED and entry is not None:
                if leg.slot is not None:
                    self._answer_if_rung(leg, now)
                elif now - leg.offered_at > entry.ring_ms / 1000 + self.cfg.engine.open_timeout_s:
                    self._reject(leg, 503, "engine did not grant a slot in time")
            elif leg.phase is Phase.CONFIRMED and entry is not None:
                limit = min(entry.max_call_s, self.cfg.sip.max_call_s)
                if now - leg.confirmed_at > limit:
                    self._hangup(leg, f"max call length {limit:g} s")
                elif leg.media and leg.media.on_hold and leg.hold_since and now - leg.hold_since > entry.max_hold_s:
                    self._hangup(leg, f"on hold longer than {entry.max_hold_s:g} s")

    def _engine_command(self, leg: CallLeg, cmd: object) -> None:
        kind = getattr(cmd, "kind")
        if kind is CommandKind.HANGUP:
            self._hangup(leg, getattr(cmd, "reason") or "agent hung up")
        elif kind is CommandKind.TRANSFER:
            target = getattr(cmd, "target") or (leg.entry.transfer_target if leg.entry else "")
            if not target or leg.phase is not Phase.CONFIRMED or leg.transfer_sent:
                leg.log.warning("transfer ignored", target=target, phase=leg.phase.value)
                return
            leg.transfer_sent = True
            leg.log.info("blind transfer (REFER)", target=target)
            try:
                leg.call.xfer(target, pj.CallOpParam(True))
            except pj.Error as exc:
                leg.log.error("REFER failed", error=exc.info())

    def _release_slot(self, slot: int) -> None:
        self.link.send_essential(wire.encode_event(slot, SessionEvent(EventKind.HANGUP, time.monotonic())))

    def _engine_lost(self) -> None:
        for leg in list(self.legs.values()):
            if leg.phase is Phase.OFFERED:
                self._reject(leg, 503, "engine unavailable")
            elif leg.phase is not Phase.ENDED:
                self._hangup(leg, "engine lost")

    # -- SIP actions --------------------------------------------------------------------------
    def _answer(self, leg: CallLeg, code: int, reason: str = "", retry_after: bool = False) -> None:
        prm = pj.CallOpParam(True)
        prm.statusCode = code
        if reason:
            prm.reason = reason
        if retry_after:
            hdr = pj.SipHeader()
            hdr.hName, hdr.hValue = "Retry-After", str(self.cfg.sip.retry_after_s)
            prm.txOption.headers.append(hdr)
        try:
            leg.call.answer(prm)
        except pj.Error as exc:
            leg.log.warning("answer failed", status=code, error=exc.info())

    def _reject(self, leg: CallLeg, code: int, why: str) -> None:
        leg.end_reason = why
        leg.log.info("call rejected", status=code, reason=why)
        metrics.CALLS.labels("not_found" if code == 404 else "rejected").inc()
        self._answer(leg, code, "Service Unavailable" if code == 503 else "", retry_after=code == 503)

    def _hangup(self, leg: CallLeg, why: str) -> None:
        if leg.phase is Phase.ENDED:
            return
        leg.end_reason = leg.end_reason or why
        leg.log.info("hanging up", reason=why)
        if leg.media is not None:
            leg.stats = read_stream_stats(leg.call) or leg.stats
        try:
            leg.call.hangup(pj.CallOpParam(True))
        except pj.Error as exc:
            leg.log.warning("hangup failed", error=exc.info())

    def _vad_batch_status(self) -> dict[str, int] | None:
        b = self.vad_batch
        return None if b is None else {"runs": b.runs, "rows": b.rows, "late_runs": b.late_runs}

    def _report_status(self) -> None:
        for leg in list(self.legs.values()):
            if leg.phase in (Phase.ANSWERED, Phase.CONFIRMED):
                leg.stats = read_stream_stats(leg.call) or leg.stats
        dropped, self.link.dropped = self.link.dropped, 0
        metrics.FRAMES_DROPPED.inc(dropped)
        if not self._status.open:
            return
        status = {
            "worker": self.name,
            "pid": os.getpid(),
            "t": time.time(),
            "engine_connected": self.link.connected,
            "draining": bool(self.draining_since),
            "max_calls": self.max_calls,
            "free_ports": len(self.free_ports),
            "threads": threading.active_count(),
            "vad_batch": self._vad_batch_status(),
            "calls": [leg.summary() for leg in list(self.legs.values())],
        }
        if not self._status.send(status):
            log.warning("supervisor gone: draining")
            self.drain()


def _detach(ports: list[FramePort]) -> None:
    for port in ports:
        port.media = None


def main(argv: list[str] | None = None) -> int:
    args, cfg = worker_args("talkover-worker", "w0", argv)
    sys.setswitchinterval(0.001)  # keeps the GIL from stalling pjsua2's clock thread
    # An automatic collection could run on pjsua's clock thread and destroy a pjsua2 object
    # there; the control loop collects once a second instead.
    gc.disable()
    worker = Worker(cfg, load_dialplan(cfg.dialplan), args.name, args.status_fd)
    try:
        code = worker.run()
    except pj.Error as exc:
        log.error("pjsua2 failed", error=exc.info(), sip=f"{cfg.sip.host}:{cfg.sip.port}")
        code = 3
    exit_skipping_finalisers(code)
    return code  # not reached


if __name__ == "__main__":
    sys.exit(main())
