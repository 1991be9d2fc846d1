"""The engine process: serves the call slots of every gateway worker on the machine.

Workers connect to a Unix SEQPACKET socket (engine/wire.py). A slot is granted when a call
is offered (OPEN → OPENED) and freed on HANGUP or when the worker's connection drops, so a
crashed worker never leaks a slot. Each slot runs a turn controller over an agent.

With `--model` (a preset or a checkpoint directory) the engine loads the speech model at
start and runs the batch scheduler's tick once per model frame between socket reads: every
`model` agent is a row of that one batched step (engine/batch/scheduler.py).

Run by the supervisor: `python -m engine.server --socket PATH --slots N`.
"""

from __future__ import annotations

import argparse
import os
import select
import selectors
import signal
import socket
import sys
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from engine import metrics, wire
from engine.agents.echo import make_agent
from engine.logs import configure_logging, get_logger
from engine.recording import CallRecorder
from engine.session import AgentAudio, Command, EventKind, SessionEvent, SessionInfo
from engine.turns.controller import TurnController, TurnSettings

if TYPE_CHECKING:
    from engine.batch.scheduler import BatchScheduler
    from engine.model.moshi_adapter import MoshiBatch

log = get_logger(component="engine")


def make_slot_agent(settings: dict[str, object], scheduler: "BatchScheduler | MoshiBatch | None", number: int,
                    call_id: str = "") -> Any:
    moshi = False
    if scheduler is not None:  # torch is loaded already
        from engine.model.moshi_adapter import MoshiBatch

        moshi = isinstance(scheduler, MoshiBatch)
    if settings.get("agent") == "receptionist" and settings.get("voice") == "live":
        if scheduler is None or moshi or scheduler.model.frontend is None:  # type: ignore[union-attr]
            raise ValueError("the live receptionist needs [engine] model = a trained unit LM "
                             "(e.g. engine/model/weights/agent)")
        from engine.agents.receptionist.live import LiveReceptionistAgent

        return LiveReceptionistAgent(settings, scheduler, number, call_id)  # type: ignore[arg-type]
    if settings.get("agent") == "receptionist":
        from engine.agents.receptionist.agent import ReceptionistAgent

        return ReceptionistAgent(settings, call_id)
    if settings.get("agent") == "moshi":
        if not moshi:
            raise ValueError("the moshi agent needs [engine] model = \"moshi:<weights dir>\" (or \"moshi:tiny\")")
        from engine.agents.moshi_agent import MoshiAgent

        return MoshiAgent(settings, scheduler, number)  # type: ignore[arg-type]
    if settings.get("agent") == "model":
        if scheduler is None or moshi:
            raise ValueError("the model agent needs a model loaded by the engine ([engine] model)")
        from engine.agents.model_agent import ModelAgent

        return ModelAgent(settings, scheduler, number)  # type: ignore[arg-type]
    return make_agent(settings)


@dataclass
class Connection:
    sock: socket.socket
    slots: set[int] = field(default_factory=set)

    def send(self, msg: bytes, essential: bool = False) -> None:
        """Audio may be dropped when the worker lags; grants and commands must arrive."""
        try:
            self.sock.send(msg, socket.MSG_DONTWAIT)
        except (BlockingIOError, InterruptedError):
            if essential and select.select([], [self.sock], [], 0.2)[1]:
                self.send(msg)
                return
            metrics.SEND_DROPS.inc()
            if essential:
                log.error("worker not reading: essential message dropped", bytes=len(msg))
        except OSError:
            pass  # the worker is gone; its connection closes on the next poll


class Slot:
    def __init__(self, number: int, info: SessionInfo, conn: Connection, record_dir: str,
                 scheduler: "BatchScheduler | MoshiBatch | None" = None) -> None:
        self.number, self.info, self.conn = number, info, conn
        self.log = get_logger(call_id=info.call_id, slot=number)
        self.recorder = CallRecorder(record_dir, info.call_id) if record_dir else None
        settings = TurnSettings.from_agent(info.agent)
        agent = make_slot_agent(info.agent, scheduler, number, info.call_id)
        self.turns = TurnController(agent, settings, self._emit, self._turn_note)

    def _turn_note(self, t: float, what: str) -> None:
        self.log.info("turn", what=what, state=self.turns.state.value, t=round(t, 3))

    def _emit(self, out: AgentAudio | Command) -> None:
        if isinstance(out, AgentAudio):
            if self.recorder:
                self.recorder.agent(out.pcm)
            self.conn.send(wire.encode_audio(self.number, out))
        else:
            self.log.info("command", kind=out.kind.name, reason=out.reason, target=out.target)
            if out.kind.name in ("FLUSH", "RESUME"):
                metrics.BARGE_INS.labels("committed" if out.kind.name == "FLUSH" else "resumed").inc()
            self.conn.send(wire.encode_command(self.number, out), essential=True)

    def frame(self, t: float, pcm: bytes) -> None:
        if self.recorder:
            self.recorder.caller(pcm)
        self.turns.on_frame(t, pcm)

    def event(self, ev: SessionEvent) -> None:
        if ev.kind is not EventKind.PLAYOUT or ev.playout is not None:
            self.log.debug("event", kind=ev.kind.name, state=self.turns.state.value)
        self.turns.on_event(ev)

    def close(self) -> None:
        self.turns.agent.close()
        if self.recorder:
            self.recorder.close()
        self.log.info("session closed", turns=len(self.turns.log))


class EngineServer:
    def __init__(self, path: str, slots: int, record_dir: str = "", model: str = "", device: str = "cpu",
                 threads: int = 1) -> None:
        self.path, self.record_dir = path, record_dir
        self.free = list(range(slots - 1, -1, -1))
        self.slots: dict[int, Slot] = {}
        self.sel = selectors.DefaultSelector()
        self._stop = False
        metrics.SLOTS_TOTAL.set(slots)
        self.scheduler: BatchScheduler | MoshiBatch | None = None
        self._tick_s, self._next_tick = 0.0, 0.0
        if model:
            self._load_model(model, device, threads, slots)

    def _load_model(self, spec: str, device: str, threads: int, slots: int) -> None:
        import torch

        from engine.batch.scheduler import BatchScheduler
        from engine.model.checkpoint import load_model, resolve_device

        torch.set_num_threads(max(1, threads))  # the gateway's clock thread shares these cores
        if spec.startswith("moshi:"):
            self._load_moshi(spec, str(resolve_device(device)), slots)
            return
        model = load_model(spec, str(resolve_device(device)))
        self.scheduler = BatchScheduler(model, slots)
        self._tick_s = model.cfg.frame_ms / 1000
        self._next_tick = time.monotonic() + self._tick_s
        params = sum(model.parameter_counts().values())
        log.info("model loaded", model=spec, config=model.cfg.name, params=params, device=device,
                 frame_ms=model.cfg.frame_ms, state_mb=round(self.scheduler.memory_bytes() / 2**20, 1))

    def _load_moshi(self, spec: str, device: str, slots: int) -> None:
        from engine.model.moshi_adapter import MoshiBatch, load_spec

        batch = MoshiBatch(load_spec(spec, device), slots)
        self.scheduler = batch
        self._tick_s = batch.frame_ms / 1000
        self._next_tick = time.monotonic() + self._tick_s
        log.info("model loaded", model=spec, config="moshi", params=sum(batch.models.parameter_counts().values()),
                 device=device, frame_ms=batch.frame_ms, state_mb=round(batch.memory_bytes() / 2**20, 1))

    def _select_timeout(self) -> float:
        if self.scheduler is None:
            return 0.5
        return min(0.5, max(0.0, self._next_tick - time.monotonic()))

    def _maybe_tick(self) -> None:
        if self.scheduler is None or time.monotonic() < self._next_tick:
            return
        from engine.batch import metrics as batch_metrics

        now = time.monotonic()
        if now - self._next_tick > self._tick_s:  # a whole frame late: do not try to make up the lost ticks
            batch_metrics.TICK_LATE.inc()
            self._next_tick = now
        self._next_tick += self._tick_s
        if self.scheduler.tick():
            stats = self.scheduler.last_tick
            assert stats is not None
            batch_metrics.TICK_SECONDS.observe(stats.seconds)
            batch_metrics.TICK_BATCH.observe(stats.batch)

    def serve(self) -> None:
        if os.path.exists(self.path):
            os.unlink(self.path)
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        listener.bind(self.path)
        listener.listen(64)
        self.sel.register(listener, selectors.EVENT_READ, None)
        log.info("engine ready", socket=self.path, slots=len(self.free))
        while not self._stop:
            for key, _ in self.sel.select(timeout=self._select_timeout()):
                if key.data is None:
                    sock, _ = listener.accept()
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
                    self.sel.register(sock, selectors.EVENT_READ, Connection(sock))
                    log.info("worker connected")
                else:
                    self._readable(key.data)
            self._maybe_tick()
        for slot in list(self.slots):
            self._release(slot)
        listener.close()
        os.unlink(self.path)
        log.info("engine stopped")

    def stop(self) -> None:
        self._stop = True

    def _readable(self, conn: Connection) -> None:
        for _ in range(256):  # bounded so one busy worker cannot starve the others
            try:
                msg = conn.sock.recv(wire.MAX_MESSAGE, socket.MSG_DONTWAIT)
            except BlockingIOError:
                return
            except OSError:
                msg = b""
            if not msg:
                self._disconnect(conn)
                return
            try:
                self._handle(conn, wire.decode(msg))
            except wire.WireError as exc:
                log.error("bad message from worker dropped", error=str(exc))

    def _handle(self, conn: Connection, msg: wire.Decoded) -> None:
        kind, number = msg[0], msg[1]
        if kind is wire.MsgType.FRAME:
            slot = self.slots.get(number)
            if slot is not None and slot.conn is conn:
                slot.frame(msg[2], msg[3])  # type: ignore[arg-type]
        elif kind is wire.MsgType.EVENT:
            slot = self.slots.get(number)
            if slot is None or slot.conn is not conn:
                return
            ev = msg[2]
            if ev.kind is EventKind.HANGUP:  # type: ignore[union-attr]
                self._release(number)
            else:
                slot.event(ev)  # type: ignore[arg-type]
        elif kind is wire.MsgType.OPEN:
            self._open(conn, msg[2], msg[3])  # type: ignore[arg-type]
        else:
            log.warning("unexpected message from worker", type=kind.name)

    def _open(self, conn: Connection, key: int, info: SessionInfo) -> None:
        if not self.free:
            metrics.SESSIONS.labels("no_slot").inc()
            log.warning("no free slot", call_id=info.call_id)
            conn.send(wire.encode_opened(key, wire.NO_SLOT, "no free engine slot"), essential=True)
            return
        number = self.free.pop()
        try:
            slot = Slot(number, info, conn, self.record_dir, self.scheduler)
        except Exception as exc:  # a bad agent setting must refuse the call, not kill the engine
            self.free.append(number)
            log.exception("session failed to start", call_id=info.call_id)
            conn.send(wire.encode_opened(key, wire.NO_SLOT, f"agent failed: {exc}"), essential=True)
            metrics.SESSIONS.labels("failed").inc()
            return
        self.slots[number] = slot
        conn.slots.add(number)
        metrics.SLOTS_IN_USE.inc()
        metrics.SESSIONS.labels("opened").inc()
        slot.log.info("session opened", agent=info.agent.get("agent"), called=info.called)
        conn.send(wire.encode_opened(key, number), essential=True)

    def _release(self, number: int) -> None:
        slot = self.slots.pop(number, None)
        if slot is None:
            return
        slot.conn.slots.discard(number)
        slot.close()
        self.free.append(number)
        metrics.SLOTS_IN_USE.dec()

    def _disconnect(self, conn: Connection) -> None:
        (log.warning if conn.slots else log.info)("worker disconnected", slots_freed=len(conn.slots))
        for number in list(conn.slots):
            self._release(number)
        self.sel.unregister(conn.sock)
        conn.sock.close()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="talkover-engine")
    ap.add_argument("--socket", required=True)
    ap.add_argument("--slots", type=int, default=16)
    ap.add_argument("--record-dir", default="")
    ap.add_argument("--log-level", default="info")
    ap.add_argument("--log-format", default="auto")
    ap.add_argument("--model", default="", help="a model preset (tiny, base) or checkpoint directory; '' = none")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=1, help="torch threads for the model step")
    args = ap.parse_args(argv)
    configure_logging(args.log_level, args.log_format, process="engine")
    try:
        server = EngineServer(args.socket, args.slots, args.record_dir, args.model, args.device, args.threads)
    except ValueError as exc:  # ModelConfigError: a bad model path or config, named
        log.error("engine cannot start", error=str(exc))
        return 2
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: server.stop())
    server.serve()
    return 0


if __name__ == "__main__":
    sys.exit(main())
