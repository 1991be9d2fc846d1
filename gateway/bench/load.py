"""`talkover bench load`: what one gateway worker sustains under SIPp, audio both ways through
the full media chain, measured from SIPp's traces, /metrics, /proc and a loopback capture.

One `talkover serve` (echo agent, chime greeting, not interruptible so replies play while the
looping caller talks; the flood limit on with 127.0.0.1 in its explicit allow-list), then:

  (a) hold     N concurrent calls (uac_call.xml, looping long_joe.ulaw) held --hold-s, for
               N = 1, 2, ... up to the worker's cap (/healthz max_calls; pjsua's 4) or
               --max-calls; passes with 0 failed calls, 0 playout underruns and RTP both ways
               on every call. CPU of the worker and the engine over the steady window, per call
               after the idle baseline.
  (b) rate     short calls (--call-s, 5 s) at R calls per second for --rate-s (60 s), R
               stepping up through --rates until a step fails; passes with 0 failed calls.
               SIP response times INVITE→200 (SIPp -trace_rtt), CPU seconds per call.

Each step is captured with tcpdump (gateway/bench/capture.py): packets each way, RTP loss,
and the agent stream's largest gap between packets (a stalled media clock shows here first).
Progress on stderr; tables on stdout; PNG at artifacts/bench_load.png.
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gateway.bench import load_report as report
from gateway.bench.barge_figures import percentile
from gateway.bench.capture import Capture, CaptureError, CapturedCall, read_calls
from gateway.bench.server import CLK_TCK, BenchError, cpu_ticks, wait_until
from gateway.bench.sipp_driver import BenchServer, keep_dir_problem, progress, rate_calls, speech_calls, work_dir

REPO = Path(__file__).resolve().parents[2]
DEFAULT_PLOT = REPO / "artifacts" / "bench_load.png"
SETTLE_S = 1.0  # after every call is confirmed, before the CPU window
PROGRESS_S = 5.0
MIN_WINDOW_S = 1.0
IDLE_S = 3.0


@dataclass
class LoadPlan:
    hold_s: float = 60.0
    max_calls: int = 0  # 0 = the worker's cap
    rates: list[float] = field(default_factory=lambda: [0.25, 0.5, 0.6, 0.7, 0.8, 1.0])
    rate_s: float = 60.0
    call_s: float = 5.0
    capture: bool = True
    quick: bool = False
    workdir: str = ""  # keep captures and logs here ("" = a temp dir, removed)

    @classmethod
    def quick_plan(cls) -> "LoadPlan":
        return cls(hold_s=8.0, max_calls=2, rates=[0.5], rate_s=6.0, call_s=2.0, quick=True)


@dataclass
class Rtp:
    calls: int = 0
    both_ways: int = 0  # calls with >= 80 % of the expected packets each way
    caller_packets: int = 0
    agent_packets: int = 0
    lost: int = 0  # sequence-number gaps, both directions
    agent_gap_max_ms: float = 0.0
    agent_gap_p99_ms: float = 0.0
    caller_gap_p99_ms: float = 0.0  # the same for SIPp's stream: what the sender side looks like here


@dataclass
class Step:
    phase: str  # "hold" or "rate"
    value: float  # N calls, or calls per second
    sipp_rc: int | None = None
    placed: int = 0
    ok_calls: int = 0
    failed: int = 0
    underruns: int = 0
    rejected: int = 0  # the gateway's 503s and pjsua's 486s during the step
    worker_pct: float = 0.0
    engine_pct: float = 0.0
    window_s: float = 0.0
    response_ms: list[float] = field(default_factory=list)
    rtp: Rtp | None = None
    error: str = ""

    @property
    def passed(self) -> bool:
        """(a) hold: 0 failed calls, 0 underruns, RTP both ways on every call; (b) rate: 0 failed
        calls (underruns and RTP are reported, not judged: the figure is the call rate)."""
        if self.error or self.sipp_rc != 0 or self.failed or self.ok_calls < self.placed:
            return False
        if self.phase == "rate":
            return True
        audio_ok = self.rtp is None or self.rtp.both_ways == self.rtp.calls == self.ok_calls
        return self.underruns == 0 and audio_ok


@dataclass
class LoadResult:
    cap: int = 0
    idle_worker_pct: float = 0.0
    idle_engine_pct: float = 0.0
    hold: list[Step] = field(default_factory=list)
    rate: list[Step] = field(default_factory=list)
    server_rc: int | None = None
    error: str = ""
    load_avg: list[float] = field(default_factory=list)  # the machine's 1-min load average, start and end


# -- helpers ----------------------------------------------------------------------------------------


class _Cpu:
    def __init__(self, pids: tuple[int, int]) -> None:
        self.pids = pids
        self.t0 = time.monotonic()
        self.w0, self.e0 = cpu_ticks(pids[0]), cpu_ticks(pids[1])

    def pct(self) -> tuple[float, float, float]:
        """(worker %, engine %, seconds) of one core since construction."""
        wall = time.monotonic() - self.t0
        k = 100.0 / CLK_TCK / max(wall, 1e-9)
        return (cpu_ticks(self.pids[0]) - self.w0) * k, (cpu_ticks(self.pids[1]) - self.e0) * k, wall


def rtp_figures(calls: list[CapturedCall]) -> Rtp:
    out = Rtp(calls=len([c for c in calls if c.answered_t is not None]))
    gaps: list[float] = []
    caller_gaps: list[float] = []
    for c in calls:
        if c.answered_t is None:
            continue
        end = c.bye_t if c.bye_t is not None else max([p.t for p in c.agent_rtp] or [c.answered_t])
        expected = max(1.0, (end - c.answered_t) / 0.02)
        out.caller_packets += len(c.caller_rtp)
        out.agent_packets += len(c.agent_rtp)
        if len(c.caller_rtp) >= 0.8 * expected * 0.9 and len(c.agent_rtp) >= 0.8 * expected:
            out.both_ways += 1  # (the caller's stream starts after the ACK: 10 % slack)
        for stream in (c.caller_rtp, c.agent_rtp):
            seqs = [p.seq for p in stream]
            out.lost += sum(max(0, ((b - a) & 0xFFFF) - 1) for a, b in zip(seqs, seqs[1:]) if ((b - a) & 0xFFFF) < 1000)
        gaps += [(b.t - a.t) * 1000 for a, b in zip(c.agent_rtp, c.agent_rtp[1:])]
        caller_gaps += [(b.t - a.t) * 1000 for a, b in zip(c.caller_rtp, c.caller_rtp[1:])]
    if gaps:
        out.agent_gap_max_ms = max(gaps)
        out.agent_gap_p99_ms = percentile(gaps, 99)
    if caller_gaps:
        out.caller_gap_p99_ms = percentile(caller_gaps, 99)
    return out


def _counters(server: BenchServer) -> tuple[float, float]:
    """(playout underruns, INVITEs refused: the gateway's 503s + pjsua's own 486s) so far."""
    rejected = server.metric("talkover_sip_rejected_by_pjsua_total")
    rejected += server.metric("talkover_calls_total", 'outcome="rejected"')
    return server.metric("talkover_playout_underruns_total"), rejected


def _drained(server: BenchServer) -> bool:
    server.check_alive()
    return not server.calls()


# -- one step -----------------------------------------------------------------------------------------


def _run_step(step: Step, server: BenchServer, pids: tuple[int, int], work: Path, plan: LoadPlan) -> None:
    tag = f"{step.phase}{step.value:g}".replace(".", "_")
    under0, rej0 = _counters(server)
    capture = Capture(work / f"{tag}.pcap", server.capture_filter()).start() if plan.capture else None
    if step.phase == "hold":
        sipp = speech_calls(work / tag, server.sip_host, tag, calls=int(step.value), limit=int(step.value),
                            rate_per_s=100, talk_s=plan.hold_s, timeout_s=plan.hold_s + 30)  # fmt: skip
    else:
        sipp = rate_calls(work / tag, server.sip_host, tag, step.value, plan.rate_s, plan.call_s)
    n = sipp.calls
    started = time.monotonic()
    sipp.start()
    cpu: _Cpu | None = _Cpu(pids) if step.phase == "rate" else None
    window_end = started + plan.hold_s - 0.5  # before the first BYE: talk_ms counts from the ACK
    all_up_at = 0.0
    shown = started

    def tick(stats: Any) -> None:
        nonlocal cpu, all_up_at, shown
        server.check_alive()
        live = [c for c in server.calls() if c.get("phase") == "confirmed"]
        now = time.monotonic()
        if step.phase == "hold":  # CPU over the steady window: every call up, none ended yet
            if not all_up_at and len(live) >= n:
                all_up_at = now
            if cpu is None and all_up_at and all_up_at + SETTLE_S <= now < window_end:
                cpu = _Cpu(pids)
            if cpu is not None and not step.window_s and (now >= window_end or len(live) < n):
                step.worker_pct, step.engine_pct, step.window_s = cpu.pct()
        if now - shown >= PROGRESS_S:
            shown = now
            under = sum(int(c.get("underruns", 0)) for c in live)
            progress("load", f"{step.phase} {step.value:g}: {stats.successful} ok, {stats.failed} failed, "
                             f"{len(live)} live, underruns in live calls {under}, {now - started:.0f} s")  # fmt: skip

    step.sipp_rc = sipp.wait(tick, every_s=0.25)
    if step.phase == "rate" and cpu is not None:
        step.worker_pct, step.engine_pct, step.window_s = cpu.pct()
    if capture is not None:
        capture.stop()
    stats = sipp.stats()
    step.placed, step.ok_calls, step.failed = stats.created, stats.successful, stats.failed
    step.response_ms = sipp.response_times_ms()
    wait_until(lambda: _drained(server), 15, "the gateway to end every call")
    under1, rej1 = _counters(server)
    step.underruns, step.rejected = int(under1 - under0), int(rej1 - rej0)
    if step.sipp_rc != 0:
        progress("load", f"{step.phase} {step.value:g}: SIPp exited {step.sipp_rc}{sipp.report(800)}")
    if step.phase == "hold" and step.window_s < MIN_WINDOW_S:
        step.error = f"no steady window of {MIN_WINDOW_S:g} s (all {n} calls were not up in time)"
    if capture is not None:
        step.rtp = rtp_figures([c for c in read_calls(capture.path) if c.called == tag])
        if not plan.workdir:
            capture.path.unlink(missing_ok=True)


# -- the command --------------------------------------------------------------------------------------


def measure(plan: LoadPlan) -> LoadResult:
    res = LoadResult(load_avg=[os.getloadavg()[0]])
    with work_dir(plan.workdir, "talkover-bench-load-") as tmp:
        work = Path(tmp)
        entry = {"agent": "echo", "greeting": "chime", "interruptible": False}
        (work / "server").mkdir()
        server = BenchServer(work / "server", max(plan.max_calls, 4), entry)
        try:
            health = server.start()
            worker = server.sip_worker(health)
            pids = (int(worker["pid"]), server.engine_pid())
            res.cap = int(worker.get("max_calls") or 4)
            progress("load", f"server up on {server.sip_host}; the worker takes {res.cap} calls; idle CPU...")
            idle = _Cpu(pids)
            time.sleep(1.0 if plan.quick else IDLE_S)
            res.idle_worker_pct, res.idle_engine_pct, _ = idle.pct()
            top = plan.max_calls or res.cap
            for n in range(1, top + 1):
                step = Step("hold", n)
                progress("load", f"hold: {n} calls for {plan.hold_s:g} s")
                _run_step(step, server, pids, work, plan)
                res.hold.append(step)  # every N up to the cap: the whole table, passed or not
            for rate in plan.rates:
                step = Step("rate", rate)
                progress("load", f"rate: {rate:g} calls/s of {plan.call_s:g} s calls for {plan.rate_s:g} s")
                _run_step(step, server, pids, work, plan)
                res.rate.append(step)
                if not step.passed:
                    break
        except (BenchError, CaptureError) as exc:
            res.error = str(exc)
            progress("load", f"FAILED: {exc}")
        finally:
            res.load_avg.append(os.getloadavg()[0])
            res.server_rc = server.stop()
            if res.server_rc != 0:
                progress("load", f"talkover serve exited {res.server_rc}:\n{server.log_tail()}")
    return res


def run(plan: LoadPlan, *, plot_path: Path | None = DEFAULT_PLOT, results: list[LoadResult] | None = None) -> int:
    """0 = the bench ran (steps may fail: that is the figure); 1 = it could not run; 2 = bad
    arguments."""
    problem = _check(plan)
    if problem:
        print(f"talkover: {problem}", file=sys.stderr)
        return 2
    t0 = time.monotonic()
    res = measure(plan)
    if results is not None:
        results.append(res)
    print(report.tables(res, plan), flush=True)
    if plot_path is not None:
        progress("load", report.plot(res, plan, plot_path))
    progress("load", f"done in {time.monotonic() - t0:.0f} s")
    return 1 if res.error or res.server_rc != 0 else 0


def _check(plan: LoadPlan) -> str:
    from shutil import which

    if plan.hold_s < 3 or plan.rate_s < 1 or plan.call_s < 1:
        return "--hold-s must be >= 3, --rate-s and --call-s >= 1"
    if plan.max_calls < 0 or not plan.rates or any(r <= 0 for r in plan.rates):
        return "--max-calls must be >= 0 and --rates positive numbers"
    if which("sipp") is None:
        return "bench load needs SIPp (sipp) on PATH (deploy/install.sh --test)"
    if plan.capture and (which("tcpdump") is None or os.geteuid() != 0):
        return "bench load captures with tcpdump (installed, run as root); --no-capture skips the RTP figures"
    return keep_dir_problem(plan.workdir)


def from_args(args: Any) -> int:
    plan = LoadPlan.quick_plan() if args.quick else LoadPlan()
    for name in ("hold_s", "max_calls", "rate_s", "call_s", "workdir"):
        value = getattr(args, name, None)
        if value is not None:
            setattr(plan, name, value)
    if args.rates:
        try:
            plan.rates = [float(x) for x in args.rates.split(",") if x.strip()]
        except ValueError:
            print(f"talkover: --rates wants comma-separated numbers, got {args.rates!r}", file=sys.stderr)
            return 2
    plan.capture = not args.no_capture
    return run(plan)


def add_arguments(p: Any) -> None:
    """`talkover bench load`'s options."""
    p.add_argument("--hold-s", type=float, help="how long each concurrency step holds its calls (default 60)")
    p.add_argument("--max-calls", type=int, help="highest concurrency step (default: the worker's cap)")
    p.add_argument("--rates", help="calls per second to step through (default 0.25,0.5,0.6,0.7,0.8,1.0)")
    p.add_argument("--rate-s", type=float, help="how long each rate step places calls (default 60)")
    p.add_argument("--call-s", type=float, help="length of the short calls (default 5)")
    p.add_argument("--no-capture", action="store_true", help="skip tcpdump (no RTP figures)")
    p.add_argument("--workdir", help="keep the captures, SIPp and server logs here (a new or empty dir)")
    p.add_argument("--quick", action="store_true", help="short steps for tests")
