"""`talkover bench pool`: what the whole machine holds against the number of SIP workers.

For each worker count W in --workers, a fresh `talkover serve` with `[supervisor] workers = W`
(W = 1: the worker listens itself, the baseline; W > 1: behind its Kamailio front door, as
deployed), the echo agent (chime greeting, not interruptible: replies play while the looping
caller talks), the full media chain, every worker on the one engine. Then, SIPp's uac_call.xml
with looping G.711 speech (rtp_stream) from 127.0.0.1 — or, with `--caller turns`, 3 s turns
of speech with 4 s of line noise after each, the agent's replies in the pauses (a line the echo
bound finds echo-free, so AEC3 is left out):

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
tables on stdout (gateway/bench/pool_report.py), PNG at artifacts/bench_pool.png. The plan and its
records: pool_plan.py; the server: pool_server.py; one step: pool_step.py.
"""

from __future__ import annotations

import os
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from gateway.bench.pool_meter import Meter
from gateway.bench.pool_plan import PoolPlan, PoolResult, PoolRun, PoolStep
from gateway.bench.pool_server import PoolServer
from gateway.bench.pool_step import run_step, warm_up
from gateway.bench.server import BenchError, wait_until
from gateway.bench.sipp_driver import progress, write_turns_ulaw

REPO = Path(__file__).resolve().parents[2]
DEFAULT_PLOT = REPO / "artifacts" / "bench_pool.png"
IDLE_S = 3.0


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
    server = PoolServer(work / "server", w, entry, plan.settings)
    try:
        server.start()
        wait_until(server.workers_up, 30 + 2 * w, f"all {w} workers up")
        if w > 1:
            wait_until(server.dispatching_to_all, 30 + w, f"Kamailio dispatching to all {w} workers")
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
        if plan.caller == "turns":
            root.mkdir(parents=True, exist_ok=True)
            plan.rtp_file = f"{write_turns_ulaw(root / 'turns.ulaw')},-1,0"
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


def config_overrides(items: list[str]) -> dict[str, dict[str, Any]]:
    """["media.vad_batch=false", ...] → {"media": {"vad_batch": False}}; the config loader checks them."""
    import tomllib

    out: dict[str, dict[str, Any]] = {}
    for item in items:
        key, sep, value = item.partition("=")
        table, dot, name = key.strip().rpartition(".")
        if not sep or not dot or not table or not name:
            raise ValueError(f"{item!r} is not TABLE.KEY=VALUE")
        try:
            parsed = tomllib.loads(f"v = {value.strip()}")["v"]
        except tomllib.TOMLDecodeError as exc:
            raise ValueError(f"{item!r}: the value is not TOML ({exc})") from None
        out.setdefault(table, {})[name] = parsed
    return out


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
    for name in ("hold_s", "rate_s", "call_s", "underrun_budget", "workdir", "caller"):
        if getattr(args, name) is not None:
            setattr(plan, name, getattr(args, name))
    try:
        plan.settings = config_overrides(args.set or [])
    except ValueError as exc:
        print(f"talkover: --set: {exc}", file=sys.stderr)
        return 2
    return run(plan)


def add_arguments(p: Any) -> None:
    """`talkover bench pool`'s options."""
    p.add_argument("--workers", help="worker counts to measure (default 1,2,4,8,16,32)")
    p.add_argument("--hold-steps", help="concurrent calls to step through (default 1,2,4,8,12,16,24,32,48,...,256)")
    p.add_argument("--hold-s", type=float, help="how long each concurrency step holds its calls (default 60)")
    p.add_argument("--rates", help="calls per second to step through (default 0.5,1,2,3,4,6,8,12,16,24,32,50,64)")
    p.add_argument("--rate-s", type=float, help="how long each rate step places calls (default 30)")
    p.add_argument("--call-s", type=float, help="length of the short calls (default 2)")
    p.add_argument("--underrun-budget", type=float, help="playout underruns a step may have per call-minute "
                   "(default 0, the issue's criterion; more separates CPU saturation from scheduling jitter)")
    p.add_argument("--workdir", help="keep the servers' logs and SIPp's traces here (default: a temp dir, removed)")
    p.add_argument("--caller", choices=("loop", "turns"),
                   help="caller audio: loop = looping speech, the agent's replies over it (default); turns = "
                        "3 s of speech then 4 s of line noise, the replies in the pauses")
    p.add_argument("--set", action="append", metavar="TABLE.KEY=VALUE",
                   help="a config setting of the measured servers, VALUE in TOML (e.g. media.vad_batch=false, "
                        "sip.jitter.init_ms=40); repeatable; printed with the results")
    p.add_argument("--quick", action="store_true", help="tiny steps for tests (1 and 2 workers, seconds)")
