"""`talkover bench pool`: what the whole machine holds against the number of SIP workers.

For each worker count W in --workers, a fresh `talkover serve` with `[supervisor] workers = W`
(W = 1: the worker listens itself, the baseline; W > 1: behind its Kamailio front door, as
deployed), the echo agent (chime greeting, not interruptible: replies play while the looping
caller talks), the full media chain, every worker on the one engine. Then, SIPp's uac_call.xml
with looping G.711 speech (rtp_stream) from 127.0.0.1:

  (a) hold   N concurrent calls held --hold-s (60), N stepping up through --hold-steps (only
             N <= 4 W: pjsua2's cap per worker) until a step fails;
  (b) rate   --call-s (2 s) calls at R calls per second for --rate-s (30), R stepping up
             through --rates until a step fails.

A step passes with SIPp's exit 0, 0 failed calls, 0 playout underruns (or at most
--underrun-budget per call-minute) and audio both ways on every call (the worker's own count
at the call's end: caller frames >= 70 % of the call's 20 ms ticks through the chain, agent
audio handed to the sender). Each W starts at the last step the previous W passed (stepping
down if that first step fails), and the run stops adding workers once more of them no longer
raise either figure. CPU: every process of the server (supervisor, engine, workers, Kamailio) and SIPp from
/proc/<pid>/stat, the machine from /proc/stat; memory: PSS (smaps_rollup); the media chain's
per-stage clock-thread time from /metrics (talkover_media_stage_seconds). Progress on stderr,
tables on stdout (gateway/bench/pool_report.py), PNG at artifacts/bench_pool.png.
"""

from __future__ import annotations

import math
import os
import random
import signal
import socket
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gateway.bench import calls as launcher
from gateway.bench.calls import _wait_until
from gateway.bench.pool_meter import Meter, Usage
from gateway.supervisor.kamailio import MAX_UNIX_PATH
from gateway.supervisor.kamailio_rpc import KamailioError, KamailioRpc
from gateway.bench.sipp_driver import AUDIO, BenchError, BenchServer, SippRun, progress

REPO = Path(__file__).resolve().parents[2]
DEFAULT_PLOT = REPO / "artifacts" / "bench_pool.png"
SPEECH = f"{AUDIO / 'long_joe.ulaw'},-1,0"  # looping caller speech
CALLS_PER_WORKER = 4  # pjsua2's compiled cap (DESIGN.md)
RAMP_PER_S = 20.0  # how fast a hold step places its calls
SETTLE_S, PROGRESS_S, IDLE_S = 1.0, 5.0, 3.0
LEFTOVER_S = 40.0  # after SIPp ended, every call must be gone (pjsip's no-ACK timeout is 32 s)
CALLER_SHARE, AGENT_FRAMES = 0.7, 10  # audio both ways: caller frames vs ticks, agent frames sent


@dataclass
class PoolPlan:
    workers: list[int] = field(default_factory=lambda: [1, 2, 4, 8, 16, 32])
    hold_steps: list[int] = field(default_factory=lambda: [1, 2, 4, 8, 12, 16, 24, 32, 48, 64, 96, 128, 150, 192, 256])
    hold_s: float = 60.0
    rates: list[float] = field(default_factory=lambda: [0.5, 1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 50, 64])
    rate_s: float = 30.0
    call_s: float = 2.0
    underrun_budget: float = 0.0  # playout underruns tolerated per call-minute (0 = the criterion)
    workdir: str = ""  # keep every server log and SIPp trace here ("" = a temp dir, removed)
    quick: bool = False

    @classmethod
    def quick_plan(cls) -> PoolPlan:
        return cls(workers=[1, 2], hold_steps=[2, 6], hold_s=5.0, rates=[1.0], rate_s=3.0, call_s=1.5, quick=True)

    def problem(self) -> str:
        if not self.workers or any(w < 1 or w > 256 for w in self.workers) or sorted(self.workers) != self.workers:
            return "--workers must be increasing numbers of workers, 1-256"
        if not self.hold_steps or any(n < 1 for n in self.hold_steps) or sorted(self.hold_steps) != self.hold_steps:
            return "--hold-steps must be increasing call counts >= 1"
        if not self.rates or any(r <= 0 for r in self.rates) or sorted(self.rates) != self.rates:
            return "--rates must be increasing positive calls per second"
        if self.hold_s < 3 or self.rate_s < 1 or self.call_s < 1:
            return "--hold-s must be >= 3, --rate-s and --call-s >= 1"
        if self.underrun_budget < 0:
            return "--underrun-budget must be >= 0 underruns per call-minute"
        if self.workdir and Path(self.workdir).exists() and any(Path(self.workdir).iterdir()):
            return f"--workdir {self.workdir} is not empty"
        return ""


@dataclass
class PoolStep:
    workers: int
    phase: str  # "hold" or "rate"
    value: float  # N calls or calls per second
    sipp_rc: int | None = None
    placed: int = 0
    ok: int = 0
    failed: int = 0
    ended: int = 0  # "call ended" records of this step's calls
    both_ways: int = 0
    underruns: int = 0
    call_minutes: float = 0.0  # of the calls that ended
    underrun_budget: float = 0.0  # per call-minute (PoolPlan.underrun_budget)
    retried: int = 0  # INVITEs a worker refused (503/486) that the front door sent elsewhere
    tick_gap_max_ms: float = 0.0
    usage: Usage = field(default_factory=Usage)
    response_ms: list[float] = field(default_factory=list)
    error: str = ""
    unreadable: list[str] = field(default_factory=list)  # result files/records that could not be read

    @property
    def passed(self) -> bool:
        audio = self.both_ways == self.ended == self.ok
        underruns_ok = self.underruns <= self.underrun_budget * self.call_minutes
        readable = not self.unreadable
        return readable and not self.error and self.sipp_rc == 0 and self.failed == 0 and underruns_ok and audio

    @property
    def reason(self) -> str:
        """Why the step did not pass, as far as it is known (for the tables)."""
        if self.unreadable:
            return "unreadable: " + "; ".join(self.unreadable)
        return self.error


@dataclass
class PoolRun:
    workers: int
    idle: Usage = field(default_factory=Usage)
    first_call_ms: list[float] = field(default_factory=list)  # INVITE->200 of each worker's first call
    hold: list[PoolStep] = field(default_factory=list)
    rate: list[PoolStep] = field(default_factory=list)
    server_rc: int | None = None
    error: str = ""

    @property
    def cap(self) -> int:
        return CALLS_PER_WORKER * self.workers

    @property
    def max_held(self) -> int:
        return max([int(s.value) for s in self.hold if s.passed] or [0])

    @property
    def max_rate(self) -> float:
        return max([s.value for s in self.rate if s.passed] or [0.0])


@dataclass
class PoolResult:
    plan: PoolPlan
    runs: list[PoolRun] = field(default_factory=list)
    load_avg: list[float] = field(default_factory=list)
    stopped_early: str = ""


# -- the server -------------------------------------------------------------------------------------


def _free_port_run(n: int) -> int:
    for _ in range(100):
        base = random.randrange(20000, 50000)
        socks: list[socket.socket] = []
        try:
            for port in range(base, base + n):
                for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
                    socks.append(socket.socket(socket.AF_INET, kind))
                    socks[-1].bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise BenchError(f"no run of {n} free ports on 127.0.0.1")


class PoolServer(BenchServer):
    """`talkover serve` with W SIP workers (and Kamailio in front when W > 1), no WebRTC worker."""

    def __init__(self, work: Path, workers: int, entry: dict[str, Any]) -> None:
        self.workers = workers
        self.rtp_range = max(400, 16 * workers)
        super().__init__(work, CALLS_PER_WORKER * workers, entry)

    def _write(self, calls: int) -> None:
        self.rtp_port = min(self.rtp_port, 60000 - self.rtp_range) & ~1
        tables: dict[str, dict[str, Any]] = {
            "sip": {"port": self.sip_port, "rtp_port": self.rtp_port, "rtp_port_range": self.rtp_range},
            "sip.flood": {"allow": self.flood_allow},
            "http": {"port": self.http_port},
            "engine": {"socket": str(self.work / "engine.sock"), "slots": calls + 4},
            "webrtc": {"enabled": False},
            "supervisor": {"workers": self.workers, "worker_port": _free_port_run(self.workers), "drain_s": 5.0,
                           "runtime_dir": str(self.work / "run"), "restart_backoff_s": 0.5},
            # one UDP reader: parallel ones can relay a 180 after its 200, which SIPp (not a phone) fails the call on
            "kamailio": {"ping_interval_s": 1, "children": 1},
            "log": {"format": "json", "level": "info"},
        }  # fmt: skip
        lines = [f"dialplan = {launcher._toml(str(self.dialplan_path))}"]
        for name, table in tables.items():
            lines.append(f"[{name}]")
            lines += [f"{k} = {launcher._toml(v)}" for k, v in table.items()]
        self.config_path.write_text("\n".join(lines) + "\n")
        body = "".join(f"{k} = {launcher._toml(v)}\n" for k, v in self.entry.items())
        self.dialplan_path.write_text("[[entry]]\n" + body)

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def calls(self) -> list[dict[str, Any]]:
        """Every worker's calls."""
        code, body = self.get_json("/calls")
        return list(body.get("calls", [])) if code == 200 else []

    def dispatching_to_all(self) -> bool:
        """Kamailio's dispatcher has every worker active (it probes them once a second)."""
        self.check_alive()
        sock = (self.work / "run" / "kamailio" / "ctl.sock").absolute()
        if len(str(sock)) > MAX_UNIX_PATH:  # Kamailio put its socket in a temp dir of its own
            time.sleep(2.0)  # then: two of its probes, a measured wait rather than a condition
            return True
        try:
            dests = KamailioRpc(str(sock)).destinations() if sock.exists() else []
        except KamailioError:
            return False
        return len(dests) == self.workers and all(d.state == "active" for d in dests)

    def workers_up(self) -> bool:
        self.check_alive()
        code, body = self.get_json("/healthz")
        sip = [w for w in body.get("workers", []) if str(w.get("name", "")).startswith("w")]
        return code == 200 and len(sip) == self.workers and all(w.get("up") for w in sip)


# -- measuring ----------------------------------------------------------------------------------------


def _audio_figures(step: PoolStep, records: list[dict[str, Any]], tag: str) -> None:
    """Both-ways audio, underruns and clock gaps from the workers' "call ended" summaries. A
    summary whose figures do not parse counts as ended without audio both ways, and says so."""
    mine = [r for r in records if str(r.get("called", "")) == tag and r.get("was") == "confirmed"]
    step.ended = len(mine)
    unreadable = 0
    for r in mine:
        try:
            age_s = float(r.get("age_s", 0.0))
            frames_in, frames_out = int(r.get("frames_in", 0)), int(r.get("frames_out", 0))
            underruns = int(r.get("underruns", 0))
            gap_ms = float((r.get("tick_gap") or {}).get("max_ms", 0.0))
        except (TypeError, ValueError, AttributeError):
            unreadable += 1
            continue
        ticks = max(1.0, age_s / 0.02 - 25)  # the call's age counts from the INVITE
        if frames_in >= CALLER_SHARE * ticks and frames_out >= AGENT_FRAMES:
            step.both_ways += 1
        step.underruns += underruns
        step.call_minutes += age_s / 60
        step.tick_gap_max_ms = max(step.tick_gap_max_ms, gap_ms)
    if unreadable:
        step.unreadable.append(f"{unreadable} call summaries")


def read_sipp_results(step: PoolStep, sipp: SippRun) -> None:
    """SIPp's counters (-trace_stat) and INVITE->200 times (-trace_rtt) into `step`. A file
    that cannot be read (missing, cut short, not a file) is noted in step.unreadable: the step
    then cannot pass (its calls are not verified), and the bench goes on to the next one."""
    try:
        lines = sipp.stat_path.read_text(errors="replace").splitlines()
        if len(lines) < 2 or "TotalCallCreated" not in lines[0]:
            raise ValueError(f"{len(lines)} lines, no counters")
    except (OSError, ValueError) as exc:
        step.unreadable.append(f"SIPp {sipp.stat_path.name} ({type(exc).__name__}: {exc})"[:120])
    else:
        stats = sipp.stats()
        step.placed, step.ok, step.failed = stats.created, stats.successful, stats.failed
    try:
        step.response_ms = sipp.response_times_ms()
    except OSError as exc:
        step.unreadable.append(f"SIPp response times ({type(exc).__name__}: {exc})"[:120])


def run_step(step: PoolStep, server: PoolServer, work: Path, plan: PoolPlan) -> None:
    tag = f"w{step.workers}{step.phase}{step.value:g}".replace(".", "_")
    log_at = server.log_size()
    retried0 = server.metric("talkover_calls_total", 'outcome="rejected"') + server.metric(
        "talkover_sip_rejected_by_pjsua_total")
    if step.phase == "hold":
        n = int(step.value)
        ramp_s = n / RAMP_PER_S
        sipp = SippRun(work / tag, "uac_call.xml", server.sip_host, calls=n, limit=n, rate_per_s=RAMP_PER_S,
                       keys={"rtp_file": SPEECH}, sets={"talk_ms": int(plan.hold_s * 1000)},
                       timeout_s=plan.hold_s + ramp_s + 30, service=tag)  # fmt: skip
    else:
        n = max(1, math.ceil(step.value * plan.rate_s))
        limit = max(8, math.ceil(step.value * (plan.call_s + 3) * 3))  # SIPp must not be what holds calls back
        sipp = SippRun(work / tag, "uac_call.xml", server.sip_host, calls=n, limit=limit, rate_per_s=step.value,
                       keys={"rtp_file": SPEECH}, sets={"talk_ms": int(plan.call_s * 1000)},
                       timeout_s=plan.rate_s + plan.call_s + 40, service=tag)  # fmt: skip
    started = time.monotonic()
    sipp.start()
    sipp_pid = sipp.proc.pid if sipp.proc else None
    meter: Meter | None = Meter(server.pid, server.http_port, sipp_pid) if step.phase == "rate" else None
    window_end = math.inf  # the first BYE comes hold_s after the first ACK, seen here up to ~1.5 s late
    all_up_at, shown = 0.0, started

    def tick(stats: Any) -> None:
        nonlocal meter, all_up_at, shown, window_end
        server.check_alive()
        now = time.monotonic()
        if step.phase == "hold":
            live = sum(1 for c in server.calls() if c.get("phase") == "confirmed" and c.get("called") == tag)
            if live and window_end == math.inf:
                window_end = now - 1.5 + plan.hold_s - 0.5
            if not all_up_at and live >= n:
                all_up_at = now
            if meter is None and all_up_at and all_up_at + SETTLE_S <= now < window_end:
                meter = Meter(server.pid, server.http_port, sipp_pid)
            if meter is not None and not step.usage.window_s and (now >= window_end or live < n):
                step.usage = meter.read()
        if now - shown >= PROGRESS_S:
            shown = now
            progress("pool", f"{step.workers} workers, {step.phase} {step.value:g}: {stats.successful} ok, "
                             f"{stats.failed} failed, {stats.current} in SIPp, {now - started:.0f} s")  # fmt: skip

    try:
        step.sipp_rc = sipp.wait(tick, every_s=0.5)
    finally:
        sipp.kill()  # only if still running (an error in tick, or the bench being stopped)
    if step.phase == "rate" and meter is not None:
        step.usage = meter.read()
    read_sipp_results(step, sipp)
    if step.sipp_rc != 0:
        step.error = _sipp_reason(sipp)
        progress("pool", f"{tag}: SIPp exited {step.sipp_rc}{sipp.report(600)}")
    def mine() -> list[dict[str, Any]]:
        server.check_alive()
        return [c for c in server.calls() if c.get("called") == tag]

    try:  # a call the caller has hung up on must end; pjsip gives up on a missing ACK after 32 s
        _wait_until(lambda: not mine(), LEFTOVER_S, "the gateway to end every call")
    except BenchError:
        left = mine()  # raises if the server died
        if left:  # else they ended just after the deadline
            step.error = f"{len(left)} call(s) still up {LEFTOVER_S:g} s after SIPp ended ({left[0].get('phase')})"
            progress("pool", f"{tag}: {step.error}: {[c.get('call_id') for c in left]}")
    try:
        _wait_until(lambda: len([r for r in server.log_records("call ended", log_at)
                                 if r.get("called") == tag]) >= step.ok, 10, "every call's summary in the log")
    except BenchError:
        step.error = step.error or "a call's summary is missing from the log (audio not verified)"
    _audio_figures(step, server.log_records("call ended", log_at), tag)
    step.retried = int(server.metric("talkover_calls_total", 'outcome="rejected"')
                       + server.metric("talkover_sip_rejected_by_pjsua_total") - retried0)
    if step.phase == "hold" and step.usage.window_s < 1.0:
        step.error = step.error or f"no steady window (all {n} calls were not up together)"


def _sipp_reason(sipp: SippRun) -> str:
    """The first unexpected message SIPp logged ('received ...'), for the table."""
    try:
        text = sipp.err_path.read_text(errors="replace")
    except OSError:
        return "SIPp failed"
    for line in text.splitlines():
        if "received" in line:
            return "SIPp: " + line.split("received", 1)[1].strip(" '\"")[:60]
    lines = [ln for ln in text.splitlines() if ln.strip()]
    return f"SIPp: {lines[-1][:60]}" if lines else "SIPp failed"


def warm_up(server: PoolServer, work: Path, w: int) -> list[float]:
    """One short call on every worker before measuring: a worker process's first call loads
    the media chain's libraries (seconds here, holding the GIL). Returns their INVITE->200 ms."""
    log_at, times, seen = server.log_size(), [], set()
    for attempt in range(3):
        tag = f"warm{attempt}"
        sipp = SippRun(work / f"w{w}{tag}", "uac_call.xml", server.sip_host, calls=w, limit=w, rate_per_s=RAMP_PER_S,
                       keys={"rtp_file": SPEECH}, sets={"talk_ms": 1000}, timeout_s=60 + w, service=tag)  # fmt: skip
        sipp.start()
        sipp.wait(lambda _: server.check_alive(), every_s=1.0)
        try:
            times += sipp.response_times_ms()
        except OSError as exc:  # only a figure for the table: the warm-up still counts
            progress("pool", f"warm-up response times unreadable: {exc}")
        _wait_until(lambda: server.check_alive() or not server.calls(), 20, "the warm-up calls to end")
        seen |= {str(r.get("process")) for r in server.log_records("call ended", log_at)}
        if len(seen) >= w:
            break
    if len(seen) < w:
        raise BenchError(f"warm-up reached {len(seen)} of {w} workers in 3 rounds: {sorted(seen)}")
    return times


def _steps_from(values: list[Any], start: Any, cap: float) -> list[Any]:
    """The values <= cap, from the largest one <= start (the previous W's best) upwards."""
    usable = [v for v in values if v <= cap]
    below = [v for v in usable if v <= start]
    return usable[usable.index(below[-1]):] if below else usable


def _step_through(w: int, phase: str, values: list[Any], every: list[Any], server: PoolServer, work: Path,
                  plan: PoolPlan) -> list[PoolStep]:
    """Up through `values` until a step fails; if the very first fails, down through the
    smaller values of `every` until one passes (so a run says what it does hold)."""
    steps: list[PoolStep] = []
    down = [v for v in reversed(every) if values and v < values[0]]
    for value in values:
        steps.append(_one_step(w, phase, value, server, work, plan))
        if not steps[-1].passed:
            break
    if steps and not steps[0].passed:
        for value in down:
            steps.append(_one_step(w, phase, value, server, work, plan))
            if steps[-1].passed:
                break
    return steps


def _one_step(w: int, phase: str, value: float, server: PoolServer, work: Path, plan: PoolPlan) -> PoolStep:
    step = PoolStep(w, phase, value, underrun_budget=plan.underrun_budget)
    what = f"hold {value:g} calls for {plan.hold_s:g} s" if phase == "hold" else \
        f"{value:g} calls/s of {plan.call_s:g} s calls for {plan.rate_s:g} s"
    progress("pool", f"{w} workers: {what}")
    try:
        run_step(step, server, work, plan)
    except BenchError:
        raise  # the server died or could not be reached: this worker count's run ends
    except (OSError, ValueError, KeyError, TypeError) as exc:  # a result that did not read as expected
        step.unreadable.append(f"step results ({type(exc).__name__}: {exc})"[:160])
    if not step.passed:
        progress("pool", f"{w} workers: {phase} {value:g} failed: {step.failed} failed calls, {step.underruns} "
                         f"underruns, audio both ways {step.both_ways}/{step.ended} {step.reason}")  # fmt: skip
    return step


def measure_workers(w: int, plan: PoolPlan, prev: PoolRun | None, tmp: Path) -> PoolRun:
    res = PoolRun(w)
    work = tmp / f"w{w}"
    (work / "server").mkdir(parents=True)
    entry = {"agent": "echo", "greeting": "chime", "interruptible": False}
    server = PoolServer(work / "server", w, entry)
    try:
        server.start()
        _wait_until(server.workers_up, 30 + 2 * w, f"all {w} workers up")
        if w > 1:
            _wait_until(server.dispatching_to_all, 30 + w, f"Kamailio dispatching to all {w} workers")
        progress("pool", f"{w} workers up ({'behind Kamailio' if w > 1 else 'no front door'}); "
                         "a first call on each, then idle CPU...")
        res.first_call_ms = warm_up(server, work, w)
        meter = Meter(server.pid, server.http_port)
        time.sleep(1.0 if plan.quick else IDLE_S)  # a measuring window, not synchronisation
        res.idle = meter.read()
        hold = _steps_from(plan.hold_steps, prev.max_held if prev else 0, res.cap)
        res.hold = _step_through(w, "hold", hold, plan.hold_steps, server, work, plan)
        rate_cap = max(res.cap / (plan.call_s + 0.5), plan.rates[0])
        rates = _steps_from(plan.rates, prev.max_rate if prev else 0, rate_cap)
        res.rate = _step_through(w, "rate", rates, plan.rates, server, work, plan)
    except BenchError as exc:
        res.error = str(exc)
        progress("pool", f"{w} workers: FAILED: {exc}")
    finally:
        res.server_rc = server.stop()
        if res.server_rc != 0:
            progress("pool", f"talkover serve ({w} workers) exited {res.server_rc}:\n{server.log_tail(1500)}")
    return res


def measure(plan: PoolPlan) -> PoolResult:
    out = PoolResult(plan, load_avg=[os.getloadavg()[0]])
    with tempfile.TemporaryDirectory(prefix="talkover-bench-pool-") as tmp:
        root = Path(plan.workdir) if plan.workdir else Path(tmp)
        for w in plan.workers:
            prev = out.runs[-1] if out.runs else None
            run = measure_workers(w, plan, prev, root)
            out.runs.append(run)
            progress("pool", f"{w} workers: held {run.max_held} calls, {run.max_rate:g} calls/s")
            if run.error:
                break
            if prev is not None and run.max_held <= prev.max_held and run.max_rate <= prev.max_rate:
                out.stopped_early = f"{w} workers held no more than {prev.workers}: the machine, not the pool, is the limit"
                break
    out.load_avg.append(os.getloadavg()[0])
    return out


def run(plan: PoolPlan, *, plot_path: Path | None = DEFAULT_PLOT, results: list[PoolResult] | None = None) -> int:
    """0 = the bench ran (steps may fail: that is the figure); 1 = it could not; 2 = bad arguments."""
    from shutil import which

    from gateway.bench import pool_report as report

    problem = plan.problem()
    if not problem and which("sipp") is None:
        problem = "bench pool needs SIPp (sipp) on PATH (deploy/install.sh --test)"
    if not problem and max(plan.workers) > 1 and which("kamailio", path="/usr/sbin:/usr/bin:" + os.environ.get("PATH", "")) is None:
        problem = "bench pool puts Kamailio in front of more than one worker: install the Debian package kamailio"
    if problem:
        print(f"talkover: {problem}", file=sys.stderr)
        return 2
    t0 = time.monotonic()
    main = threading.current_thread() is threading.main_thread()
    before = signal.signal(signal.SIGTERM, _stop) if main else None  # stopping the bench stops its server too
    try:
        res = measure(plan)
    finally:
        if main:
            signal.signal(signal.SIGTERM, before)
    if results is not None:
        results.append(res)
    print(report.tables(res), flush=True)
    if plot_path is not None:
        progress("pool", report.plot(res, plot_path))
    progress("pool", f"done in {time.monotonic() - t0:.0f} s")
    return 1 if any(r.error or r.server_rc != 0 for r in res.runs) else 0


def _stop(*_: Any) -> None:
    raise SystemExit(143)


def _numbers(text: str, kind: type) -> list[Any]:
    return [kind(x) for x in text.split(",") if x.strip()]


def from_args(args: Any) -> int:
    plan = PoolPlan.quick_plan() if args.quick else PoolPlan()
    try:
        for name, kind in (("workers", int), ("hold_steps", int), ("rates", float)):
            text = getattr(args, name)
            if text:
                setattr(plan, name, _numbers(text, kind))
    except ValueError as exc:
        print(f"talkover: --workers, --hold-steps and --rates want comma-separated numbers ({exc})", file=sys.stderr)
        return 2
    for name in ("hold_s", "rate_s", "call_s", "underrun_budget", "workdir"):
        if getattr(args, name) is not None:
            setattr(plan, name, getattr(args, name))
    return run(plan)


def add_parser(sub: Any) -> None:
    p = sub.add_parser("pool", help="concurrent calls and calls per second the machine holds vs SIP workers")
    p.add_argument("--workers", help="worker counts to measure (default 1,2,4,8,16,32)")
    p.add_argument("--hold-steps", help="concurrent calls to step through (default 1,2,4,8,12,16,24,32,48,...,256)")
    p.add_argument("--hold-s", type=float, help="how long each concurrency step holds its calls (default 60)")
    p.add_argument("--rates", help="calls per second to step through (default 0.5,1,2,3,4,6,8,12,16,24,32,50,64)")
    p.add_argument("--rate-s", type=float, help="how long each rate step places calls (default 30)")
    p.add_argument("--call-s", type=float, help="length of the short calls (default 2)")
    p.add_argument("--underrun-budget", type=float, help="playout underruns a step may have per call-minute "
                   "(default 0, the issue's criterion; more separates CPU saturation from scheduling jitter)")
    p.add_argument("--workdir", help="keep the servers' logs and SIPp's traces here (default: a temp dir, removed)")
    p.add_argument("--quick", action="store_true", help="tiny steps for tests (1 and 2 workers, seconds)")
    p.set_defaults(func=from_args)
