"""The WebRTC worker: browser calls on aiortc, one asyncio loop, its own process.

Like a SIP worker (gateway/sip/worker.py) it owns call slots, asks the engine for a
session per call (OPEN/OPENED), runs the same per-call chain (CallMedia), follows the
engine's commands, ends calls on engine loss, drains on SIGTERM and reports its status to
the supervisor as JSON lines. Signalling arrives from the supervisor's HTTP listener over a
Unix socket (gateway/webrtc/signalling.py; routes in gateway/webrtc/routes.py).

The gateway owns time: one clock task ticks every live call each 20 ms: one caller frame
into CallMedia.inbound(), one CallMedia.outbound() frame to the call's AgentTrack.

Run by the supervisor: `python -m gateway.webrtc.worker --config RESOLVED.json --status-fd N`.
"""

from __future__ import annotations

import asyncio
import gc
import itertools
import os
import signal
import sys
import threading
import time
from pathlib import Path

from engine import wire
from engine.logs import get_logger
from engine.session import Command, CommandKind, EventKind, SessionEvent
from gateway import metrics
from gateway.config import Config, MediaConfig
from gateway.dialplan import Dialplan, load_dialplan
from gateway.engine_link import EngineLink
from gateway.media.chain import CallMedia, warm_media_chain
from gateway.webrtc import metrics as rtc_metrics
from gateway.webrtc.call import Phase, WebRtcCall
from gateway.webrtc.ice import apply_ice_policy
from gateway.webrtc.routes import Routes
from gateway.webrtc.signalling import MAX_LINE, SOCKET_NAME, SignalReply, SignalRequest
from gateway.worker_process import StatusPipe, exit_skipping_finalisers, route_engine_message, worker_args

log = get_logger(component="webrtc")
TICK_S = 0.02
CATCH_UP_S = 0.2  # a late clock catches up (RTP bursts the browser's jitter buffer absorbs) up to this
CONTROL_S = 0.1


class WebRtcWorker:
    def __init__(self, cfg: Config, dialplan: Dialplan, name: str, status_fd: int | None) -> None:
        self.cfg, self.dialplan, self.name = cfg, dialplan, name
        self.link = EngineLink(cfg.engine_socket(), self._on_engine_message, self._on_engine_state)
        self.calls: dict[str, WebRtcCall] = {}
        self.by_slot: dict[int, WebRtcCall] = {}
        self.pending_open: dict[int, asyncio.Future[tuple[int, str]]] = {}
        self.keys = itertools.count(1)
        self.routes = Routes(self)
        self.draining_since = 0.0
        self.clock_late = 0
        self._status = StatusPipe(status_fd)
        self.socket_path = cfg.runtime_dir() / SOCKET_NAME
        self.loop: asyncio.AbstractEventLoop | None = None
        self.warm: asyncio.Future[None] | None = None
        self.has_calls = asyncio.Event()

    # -- lifecycle ----------------------------------------------------------------------------
    async def run(self) -> int:
        self.loop = asyncio.get_running_loop()
        apply_ice_policy(self.cfg.webrtc)
        self.socket_path.unlink(missing_ok=True)
        server = await asyncio.start_unix_server(self._client, path=str(self.socket_path), limit=MAX_LINE)
        self.link.start()
        for sig in (signal.SIGTERM, signal.SIGINT):
            self.loop.add_signal_handler(sig, self.drain)
        clock = asyncio.create_task(self._clock())
        self.warm = warm = asyncio.ensure_future(asyncio.to_thread(_warm_and_freeze, self.cfg.media))
        log.info("webrtc worker ready", name=self.name, max_calls=self.cfg.webrtc.max_calls,
                 socket=str(self.socket_path), host_addresses=self.cfg.webrtc.host_addresses)
        try:
            await self._control()
        finally:
            server.close()
            clock.cancel()
            await warm
            await asyncio.gather(*(self.end(call, "worker stopping") for call in list(self.calls.values())))
            self.link.stop()
            self.socket_path.unlink(missing_ok=True)
            for sig in (signal.SIGTERM, signal.SIGINT):  # a repeated SIGTERM while exiting is no crash
                self.loop.remove_signal_handler(sig)
                signal.signal(sig, signal.SIG_IGN)
            log.info("webrtc worker stopped", name=self.name)
        return 0

    def drain(self) -> None:
        if not self.draining_since:
            self.draining_since = time.monotonic()
            log.info("draining: new offers get 503", live_calls=len(self.calls), drain_s=self.cfg.supervisor.drain_s)

    async def _control(self) -> None:
        next_status = 0.0
        drain_s = self.cfg.supervisor.drain_s
        while True:
            await asyncio.sleep(CONTROL_S)
            self.link.flush_backlog()
            now = time.monotonic()
            await self._timers(now)
            if now >= next_status:
                next_status = now + 1.0
                self._report_status()
            if self.draining_since:
                if now - self.draining_since > drain_s:
                    await asyncio.gather(*(self.end(call, "drain window over") for call in list(self.calls.values())))
                if not self.calls or now - self.draining_since > drain_s + 5:
                    return

    async def _clock(self) -> None:
        assert self.loop is not None
        next_t = self.loop.time()
        while True:
            if not self.calls:  # idle: no wake-ups until a call arrives
                await self.has_calls.wait()
                next_t = self.loop.time()
            next_t += TICK_S
            delay = next_t - self.loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            else:
                if delay < -CATCH_UP_S:  # blocked for long: skip the lost ticks rather than burst them all
                    self.clock_late += 1
                    rtc_metrics.CLOCK_LATE.inc()
                    next_t = self.loop.time()
                await asyncio.sleep(0)
            for call in list(self.calls.values()):
                try:
                    call.tick()
                except Exception:
                    call.log.exception("media tick failed")

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = await asyncio.wait_for(reader.readline(), 10)
            reply = await self.routes.dispatch(SignalRequest.decode(line))
        except (ValueError, TypeError, asyncio.LimitOverrunError, asyncio.TimeoutError) as exc:
            reply = SignalReply(400, {"error": f"bad signalling request: {exc}"})
        except Exception as exc:
            log.exception("signalling request failed")
            reply = SignalReply(500, {"error": f"internal error: {type(exc).__name__}"})
        try:
            writer.write(reply.encode())
            await writer.drain()
            writer.close()
        except OSError:
            pass

    # -- calls ----------------------------------------------------------------------------------
    def connected(self, call: WebRtcCall) -> None:
        if call.phase is not Phase.ANSWERED or call.media is None:
            return
        call.phase, call.connected_at = Phase.CONNECTED, time.monotonic()
        call.media.start()
        self.apply_hold(call)
        metrics.CALLS.labels("answered").inc()
        rtc_metrics.CONNECT_SECONDS.observe(call.connected_at - call.offered_at)
        call.log.info("call connected", codec=call.codec, slot=call.slot,
                      connect_ms=round((call.connected_at - call.offered_at) * 1000))
        call.send_state(force=True)

    def apply_hold(self, call: WebRtcCall) -> None:
        media = call.media
        if media is None or call.phase is not Phase.CONNECTED or media.on_hold == call.held_by_offer:
            return
        media.hold(call.held_by_offer)
        call.inbound.reset()
        call.log.info("hold" if call.held_by_offer else "resume")
        if call.held_by_offer:
            call.hold_since = time.monotonic()
            if call.entry.on_hold == "hangup":
                asyncio.ensure_future(self.end(call, "hold: dialplan says hang up"))
        call.send_state(force=True)

    def dtmf(self, call: WebRtcCall, digit: str, duration_ms: int) -> None:
        if call.media is not None and call.phase is Phase.CONNECTED:
            call.media.dtmf(digit, duration_ms)
            call.log.info("dtmf", digit=digit, duration_ms=duration_ms)

    async def end(self, call: WebRtcCall, reason: str, outcome: str = "failed") -> None:
        if call.phase is Phase.ENDED:
            return
        was = call.phase
        call.phase = Phase.ENDED
        call.end_reason = call.end_reason or reason
        self.calls.pop(call.call_id, None)
        if not self.calls:
            self.has_calls.clear()
        metrics.CALLS_ACTIVE.dec()
        if call.media is not None:
            call.media.close()
            metrics.UNDERRUNS.inc(call.media.playout.underruns)
        elif call.slot is not None:
            self.release_slot(call.slot)
        if call.slot is not None:
            self.by_slot.pop(call.slot, None)
        if was is Phase.CONNECTED:
            metrics.CALL_DURATION.observe(time.monotonic() - call.connected_at)
        else:
            metrics.CALLS.labels(outcome).inc()
        rtc_metrics.INBOUND_GAPS.inc(call.inbound.gaps)
        if call.pc is not None and call.pc.connectionState == "connected":
            if call.end_reason == "caller hung up":
                call.send({"type": "ended", "reason": call.end_reason})  # the page knows: no need to wait
            elif not await call.tell_page_ended():
                call.log.warning("the page did not confirm that it learnt why the call ended (2 s)")
        call.track.end()
        if call.reader is not None:
            call.reader.cancel()
        if call.pc is not None:
            try:
                await call.pc.close()
            except Exception:
                call.log.exception("closing the peer connection failed")
            rtc_metrics.PEER_CONNECTIONS.dec()
        call.log.info("call ended", reason=call.end_reason, was=was.value, **call.summary())

    async def _timers(self, now: float) -> None:
        """Ends run as tasks: one may wait (2 s at most) for its page's ended_ack, and the
        control loop must not wait with it."""
        for call in list(self.calls.values()):
            if call.phase is Phase.ANSWERED and now - call.answered_at > self.cfg.webrtc.connect_timeout_s:
                asyncio.ensure_future(self.end(call, "ICE/DTLS did not connect in time"))
            elif call.phase is Phase.CONNECTED:
                if now - call.connected_at > call.entry.max_call_s:
                    asyncio.ensure_future(self.end(call, f"max call length {call.entry.max_call_s:g} s"))
                elif call.media and call.media.on_hold and now - call.hold_since > call.entry.max_hold_s:
                    asyncio.ensure_future(self.end(call, f"on hold longer than {call.entry.max_hold_s:g} s"))

    def release_slot(self, slot: int) -> None:
        self.link.send_essential(wire.encode_event(slot, SessionEvent(EventKind.HANGUP, time.monotonic())))

    # -- engine: link thread ----------------------------------------------------------------------
    def _on_engine_message(self, msg: wire.Decoded) -> None:
        route_engine_message(
            msg,
            self.by_slot.get,
            lambda call, cmd: self._soon(self._engine_command, call, cmd),
            lambda key, slot, reason: self._soon(self._granted, key, slot, reason),
        )

    def _on_engine_state(self, up: bool) -> None:
        metrics.ENGINE_CONNECTED.set(1 if up else 0)
        if not up:
            self._soon(self._engine_lost)

    def _soon(self, fn: object, *args: object) -> None:
        if self.loop is not None and not self.loop.is_closed():
            self.loop.call_soon_threadsafe(fn, *args)  # type: ignore[arg-type]

    # -- engine: loop thread ----------------------------------------------------------------------
    def _granted(self, key: int, slot: int, reason: str) -> None:
        fut = self.pending_open.pop(key, None)
        if fut is None or fut.done():
            if slot != wire.NO_SLOT:
                self.release_slot(slot)  # the offer gave up (timeout, hangup) before the grant
            return
        fut.set_result((slot, reason))

    def _engine_command(self, call: WebRtcCall, cmd: Command) -> None:
        if cmd.kind is CommandKind.HANGUP:
            asyncio.ensure_future(self.end(call, cmd.reason or "agent hung up"))
        elif cmd.kind is CommandKind.TRANSFER:
            call.log.warning("transfer ignored: a WebRTC call cannot be referred", target=cmd.target)

    def _engine_lost(self) -> None:
        for fut in self.pending_open.values():
            if not fut.done():
                fut.set_result((wire.NO_SLOT, "engine lost"))
        self.pending_open.clear()
        for call in list(self.calls.values()):
            asyncio.ensure_future(self.end(call, "engine lost"))

    # -- status -----------------------------------------------------------------------------------
    def _report_status(self) -> None:
        dropped, self.link.dropped = self.link.dropped, 0
        metrics.FRAMES_DROPPED.inc(dropped)
        if not self._status.open:
            return
        live = len(self.calls)
        status = {
            "worker": self.name,
            "transport": "webrtc",
            "pid": os.getpid(),
            "t": time.time(),
            "engine_connected": self.link.connected,
            "draining": bool(self.draining_since),
            "max_calls": self.cfg.webrtc.max_calls,
            "free_ports": max(0, self.cfg.webrtc.max_calls - live),
            "threads": threading.active_count(),
            "udp_sockets": udp_sockets(),
            "clock_late": self.clock_late,
            "media_warm": self.warm is not None and self.warm.done(),
            "calls": [c.summary() for c in self.calls.values()],
        }
        if not self._status.send(status):
            log.warning("supervisor gone: draining")
            self.drain()


def _warm_and_freeze(cfg: MediaConfig) -> None:
    """Load the DSP models, then freeze every object made so far: the automatic collector
    then scans only new objects (a full collection here takes ~80 ms: a clock stall)."""
    warm_media_chain(cfg)
    gc.collect()
    gc.freeze()


def udp_sockets() -> int:
    """UDP sockets this process holds (ICE candidates' ports): they must all go with the calls."""
    inodes: set[str] = set()
    for table in ("/proc/self/net/udp", "/proc/self/net/udp6"):
        try:
            rows = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        inodes.update(r.split()[9] for r in rows if len(r.split()) > 9)
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:[") and target[8:-1] in inodes:
            count += 1
    return count


def main(argv: list[str] | None = None) -> int:
    args, cfg = worker_args("talkover-webrtc", "webrtc", argv)
    sys.setswitchinterval(0.001)  # aiortc's decoder threads must not hold the GIL for 5 ms ticks of the clock
    worker = WebRtcWorker(cfg, load_dialplan(cfg.dialplan), args.name, args.status_fd)
    code = asyncio.run(worker.run())
    exit_skipping_finalisers(code)
    return code  # not reached


if __name__ == "__main__":
    sys.exit(main())
