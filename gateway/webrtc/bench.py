"""`talkover bench webrtc`: how many concurrent WebRTC calls one worker process holds here.

A real `talkover serve` (echo agent) takes calls from aiortc callers in this process, which
talk in a loop (speech, then silence: the agent echoes each turn) over Opus on loopback.
Side by side, the same callers call a bare aiortc answerer (no media chain, no engine, a
paced tone back): the cost of aiortc itself. Calls are added step by step; at each step the
table shows the answering process's CPU (% of one core), the callers' CPU, the agent audio
the callers received (% of 50 frames/s), and for talkover the media clock's tick-gap p99 and
the caller frames missing at a tick. A step "holds" when the worker stays under 85 % of a
core, the callers get ≥ 97 % of the frames and the clock's p99 gap stays ≤ 30 ms. On 2
cores the callers, the engine and the worker share the machine: the figure is a floor.
Plot: artifacts/bench_webrtc.png.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from gateway.config import REPO_ROOT
from gateway.webrtc.client import WebCaller, loopback_only
from gateway.webrtc.signalling import SignalReply, SignalRequest, forward

ARTIFACTS = REPO_ROOT / "artifacts"
SPEECH = REPO_ROOT / "tests" / "data" / "hours_joe_16k.wav"
TICKS_PER_S = 50


@dataclass
class Step:
    server: str
    calls: int
    server_cpu: float  # % of one core, the answering process
    client_cpu: float
    engine_cpu: float
    rx_pct: float  # frames received by the callers / 50 per second per call
    tick_p99_ms: float
    gaps_pct: float  # ticks without a caller frame ready
    holds: bool


def cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _http(url: str, body: dict[str, Any] | None = None) -> Any:
    data = json.dumps(body).encode() if body is not None else None
    with urllib.request.urlopen(urllib.request.Request(url, data=data), timeout=20) as r:
        return json.loads(r.read())


class Talkover:
    name = "talkover"

    def __init__(self, tmp: Path, max_calls: int) -> None:
        port = _free_tcp_port()
        self.url = f"http://127.0.0.1:{port}"
        plan, cfg = tmp / "dialplan.toml", tmp / "talkover.toml"
        plan.write_text('[[entry]]\nname = "bench"\nnumbers = ["*"]\nagent = "echo"\ngreeting = "chime"\n')
        cfg.write_text(f'dialplan = "{plan}"\n[http]\nport = {port}\n[sip]\nport = {_free_tcp_port()}\n'
                       f'rtp_port = {random.randrange(20000, 60000, 2)}\n[engine]\nslots = {max_calls + 4}\n[webrtc]\nmax_calls = {max_calls}\n'
                       f'host_addresses = ["127.0.0.1"]\n[supervisor]\nruntime_dir = "{tmp / "run"}"\n'
                       '[log]\nformat = "json"\nlevel = "info"\n')
        self.log_path = tmp / "talkover.log"
        self.log = open(self.log_path, "wb")
        self.proc = subprocess.Popen([sys.executable, "-m", "gateway.cli", "serve", "--config", str(cfg)],
                                     stdout=self.log, stderr=subprocess.STDOUT, cwd=REPO_ROOT)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                health = _http(f"{self.url}/healthz")
                self.pid = next(w["pid"] for w in health["workers"] if w["name"] == "webrtc")
                self.engine_pid = _engine_pid(tmp)
                break
            except (OSError, ValueError, StopIteration, KeyError):
                if self.proc.poll() is not None:
                    raise RuntimeError(f"talkover serve exited: see {tmp / 'talkover.log'}") from None
                time.sleep(0.2)  # polling the server's own readiness, bounded by the deadline
        else:
            raise RuntimeError("talkover serve did not come up in 60 s")
        while b'"media chain warm"' not in self.log_path.read_bytes():  # its first chain loads the DSP models
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise RuntimeError(f"the WebRTC worker did not get ready: see {self.log_path}")
            time.sleep(0.2)

    def caller(self) -> WebCaller:
        return WebCaller(self.url, keep_audio=False)

    def calls(self) -> list[dict[str, Any]]:
        return list(_http(f"{self.url}/calls")["calls"])

    def close(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


class BareAiortc:
    name = "bare aiortc"

    def __init__(self, tmp: Path) -> None:
        self.sock = str(tmp / "bare.sock")
        self.proc = subprocess.Popen([sys.executable, "-m", "gateway.webrtc.bench", "--bare", self.sock], cwd=REPO_ROOT)
        self.pid, self.engine_pid = self.proc.pid, 0
        deadline = time.monotonic() + 30
        while not Path(self.sock).exists():
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise RuntimeError("the bare aiortc answerer did not start")
            time.sleep(0.05)  # waiting for the child's socket file, bounded

    def caller(self) -> WebCaller:
        c = WebCaller("http://bare", keep_audio=False)

        def post(url: str, body: dict[str, Any], timeout: float) -> dict[str, Any]:
            reply = forward(self.sock, SignalRequest("POST", "/webrtc/offer", {}, json.dumps(body)), timeout)
            if reply.status != 200:
                raise RuntimeError(f"bare answerer: {reply.status} {reply.body}")
            return reply.body

        c.poster = post
        return c

    def calls(self) -> list[dict[str, Any]]:
        return []

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


async def _measure(server: Talkover | BareAiortc, steps: list[int], seconds: float, voice: np.ndarray) -> list[Step]:
    callers: list[WebCaller] = []
    out: list[Step] = []
    try:
        for n in steps:
            while len(callers) < n:
                c = server.caller()
                c.mic.loop(voice)
                callers.append(c)
                await c.call()
                await c.wait_connected()
            await asyncio.sleep(2.0)  # settle: greetings, jitter buffers
            before = _sample(server, callers)
            await asyncio.sleep(seconds)
            after = _sample(server, callers)
            out.append(_step(server, n, before, after))
            s = out[-1]
            print(f"  {server.name:12s} {n:3d} calls: worker {s.server_cpu:5.1f} %  callers {s.client_cpu:5.1f} %  "
                  f"rx {s.rx_pct:5.1f} %  tick p99 {s.tick_p99_ms:4.0f} ms  {'holds' if s.holds else 'OVER'}", flush=True)
            if s.server_cpu > 97 or s.rx_pct < 80:
                break  # clearly past capacity: more calls only measure the collapse
    finally:
        for c in callers:
            await c.close()
    return out


def _sample(server: Talkover | BareAiortc, callers: list[WebCaller]) -> dict[str, Any]:
    return {"t": time.monotonic(), "server": cpu_s(server.pid), "client": cpu_s(os.getpid()),
            "engine": cpu_s(server.engine_pid) if server.engine_pid else 0.0,
            "rx": sum(c.frames_heard for c in callers), "calls": server.calls()}


def _step(server: Talkover | BareAiortc, n: int, a: dict[str, Any], b: dict[str, Any]) -> Step:
    dt = b["t"] - a["t"]
    pct = lambda key: 100 * (b[key] - a[key]) / dt  # noqa: E731
    rx = 100 * (b["rx"] - a["rx"]) / (dt * TICKS_PER_S * n)
    p99 = max((c["tick_gap"].get("p99_ms", 0.0) for c in b["calls"]), default=0.0)
    gaps_a = {c["call_id"]: c["inbound_gaps"] for c in a["calls"]}
    gaps = sum(c["inbound_gaps"] - gaps_a.get(c["call_id"], 0) for c in b["calls"])
    gaps_pct = 100 * gaps / (dt * TICKS_PER_S * n) if b["calls"] else 0.0
    holds = pct("server") < 85 and rx >= 97 and p99 <= 30
    return Step(server.name, n, pct("server"), pct("client"), pct("engine"), rx, p99, gaps_pct, holds)


def run(steps_arg: str = "1,2,4,8,12,16,24,32", seconds: float = 6.0, plot: bool = True) -> int:
    steps = sorted({int(s) for s in steps_arg.split(",") if s.strip()})
    if not steps or steps[0] < 1:
        print("talkover bench webrtc: --steps must list positive call counts", file=sys.stderr)
        return 2
    results = measure(steps, seconds)
    print_table(results, steps)
    if plot:
        print(f"plot: {save_plot(results)}")
    return 0


def add_arguments(p: Any) -> None:
    """`talkover bench webrtc`'s options."""
    p.add_argument("--steps", default="1,2,4,8,12,16,24,32", help="call counts to measure, comma-separated")
    p.add_argument("--seconds", type=float, default=6.0, help="measuring time per step")


def from_args(args: Any) -> int:
    return run(args.steps, args.seconds)


def measure(steps: list[int], seconds: float) -> list[Step]:
    loopback_only()
    voice = np.concatenate([_speech(), np.zeros(24000, np.int16)])  # a turn every ~4 s
    results: list[Step] = []
    tmp = Path(tempfile.mkdtemp(prefix="talkover-bench-webrtc-"))
    try:
        for make in (lambda: Talkover(tmp / "talkover", max(steps)), lambda: BareAiortc(tmp)):
            (tmp / "talkover").mkdir(exist_ok=True)
            server = make()
            print(f"{server.name}: up to {max(steps)} calls, {seconds:g} s per step", flush=True)
            try:
                results += asyncio.run(_measure(server, steps, seconds, voice))
            finally:
                server.close()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return results


def capacity(results: list[Step], server: str) -> int:
    held = [r.calls for r in results if r.server == server and r.holds]
    return max(held, default=0)


def print_table(results: list[Step], steps: list[int]) -> None:
    by = {(r.server, r.calls): r for r in results}
    print()
    print("calls | talkover worker CPU | bare aiortc CPU | callers CPU (talkover) | engine CPU | rx talkover | rx bare "
          "| tick p99 | caller gaps | holds")
    print("---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | :---:")
    for n in steps:
        t, b = by.get(("talkover", n)), by.get(("bare aiortc", n))
        cell = lambda r, f: f if r is not None else "—"  # noqa: E731
        print(f"{n} | {cell(t, f'{t.server_cpu:.1f} %' if t else '')} | {cell(b, f'{b.server_cpu:.1f} %' if b else '')} | "
              f"{cell(t, f'{t.client_cpu:.1f} %' if t else '')} | {cell(t, f'{t.engine_cpu:.1f} %' if t else '')} | "
              f"{cell(t, f'{t.rx_pct:.1f} %' if t else '')} | {cell(b, f'{b.rx_pct:.1f} %' if b else '')} | "
              f"{cell(t, f'{t.tick_p99_ms:.0f} ms' if t else '')} | {cell(t, f'{t.gaps_pct:.1f} %' if t else '')} | "
              f"{cell(t, 'yes' if t and t.holds else 'no')}")
    print()
    print(f"talkover WebRTC worker holds {capacity(results, 'talkover')} concurrent calls here "
          f"(largest step measured: {max(steps)}; the callers share these 2 cores)")
    for server in ("talkover", "bare aiortc"):
        fit = cpu_fit(results, server)
        if fit is not None:
            base, per_call = fit
            print(f"{server}: {per_call:.1f} % of a core per call on top of {base:.1f} %; "
                  f"85 % of a core ≈ {(85 - base) / per_call:.0f} calls (linear estimate)")


def cpu_fit(results: list[Step], server: str) -> tuple[float, float] | None:
    """Answerer CPU ≈ base + per_call × calls, over the steps whose audio was intact."""
    rows = [r for r in results if r.server == server and r.rx_pct >= 97]
    if len({r.calls for r in rows}) < 2:
        return None
    per_call, base = np.polyfit([r.calls for r in rows], [r.server_cpu for r in rows], 1)
    return float(base), float(per_call)


def save_plot(results: list[Step]) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
    for server, style in (("talkover", "o-"), ("bare aiortc", "s--")):
        rows = [r for r in results if r.server == server]
        ax1.plot([r.calls for r in rows], [r.server_cpu for r in rows], style, label=f"{server} answerer")
        ax2.plot([r.calls for r in rows], [r.rx_pct for r in rows], style, label=f"audio received ({server})")
    rows = [r for r in results if r.server == "talkover"]
    ax1.plot([r.calls for r in rows], [r.client_cpu for r in rows], "^:", label="aiortc callers (this process)")
    ax1.axhline(85, color="grey", lw=0.8, ls=":")
    ax1.set(xlabel="concurrent WebRTC calls", ylabel="CPU, % of one core", title="CPU per process")
    ax2b = ax2.twinx()
    ax2b.plot([r.calls for r in rows], [r.tick_p99_ms for r in rows], "x-", color="tab:red", label="tick gap p99 (talkover)")
    ax2b.set_ylabel("media clock tick gap p99 (ms)")
    ax2.set(xlabel="concurrent WebRTC calls", ylabel="agent frames received (%)", title="media health")
    ax1.legend(fontsize=8)
    ax2.legend(fontsize=8, loc="lower left")
    ax2b.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / "bench_webrtc.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _speech() -> np.ndarray:
    import wave

    with wave.open(str(SPEECH), "rb") as w:
        return np.frombuffer(w.readframes(w.getnframes()), np.int16).copy()


def _free_tcp_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _engine_pid(tmp: Path) -> int:
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if "engine.server" in cmd and str(tmp) in cmd:
            return int(pid)
    return 0


# -- the baseline: aiortc alone -----------------------------------------------------------------
async def _bare_server(sock: str) -> None:
    from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription

    from gateway.webrtc.client import CallerTrack

    tone = (np.sin(2 * np.pi * 440 * np.arange(16000) / 16000) * 6000).astype(np.int16)
    pcs: dict[str, RTCPeerConnection] = {}

    async def drain(track: Any) -> None:
        try:
            while True:
                await track.recv()
        except Exception:
            pass

    async def client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        req = SignalRequest.decode(await reader.readline())
        body = json.loads(req.body)
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        track = CallerTrack()
        track.loop(tone)
        pc.addTrack(track)
        pc.on("track", lambda t: asyncio.ensure_future(drain(t)))
        await pc.setRemoteDescription(RTCSessionDescription(body["sdp"], "offer"))
        await pc.setLocalDescription(await pc.createAnswer())
        call_id = uuid.uuid4().hex
        pcs[call_id] = pc
        writer.write(SignalReply(200, {"type": "answer", "sdp": pc.localDescription.sdp, "call_id": call_id}).encode())
        await writer.drain()
        writer.close()

    loopback_only()
    server = await asyncio.start_unix_server(client, path=sock)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--bare":
        try:
            asyncio.run(_bare_server(sys.argv[2]))
        except KeyboardInterrupt:
            pass
