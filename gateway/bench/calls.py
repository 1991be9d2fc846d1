"""`talkover bench calls`: what N concurrent calls cost the real gateway, audio both ways.

For each N in --calls, a fresh `talkover serve` (its own temp config, free ports, JSON
logs, the echo agent with the chime greeting for every number) is started and measured:

  idle      CPU of the worker and engine processes for a few seconds with no call
  N calls   SIPp's uac_call.xml places N concurrent calls (-l N -m N), each streaming
            looping G.711 speech (long_joe.ulaw) for --seconds; the echo agent plays
            every caller turn back, so audio flows both ways. Once /calls shows N
            confirmed calls, CPU is sampled over the steady window (after a short settle,
            ending before the first BYE) and /calls is read at its end: tick gaps of the
            media clock, playout underruns, frames in/out.

SIPp must exit 0 (every call answered, BYE answered) and the server must exit 0 on
SIGTERM. CPU comes from /proc/<pid>/stat (utime + stime, in clock ticks): "% of a core"
is CPU seconds per wall second x 100. Per call = (total - idle) / N.

The table goes to stdout, progress to stderr; a PNG (CPU per call vs N) goes to
artifacts/bench_calls.png when matplotlib is importable (gateway/bench/calls_report.py). The
server under test is gateway/bench/server.py's, as for the other SIPp benches.
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from gateway.bench import calls_report as report
from gateway.bench.server import CLK_TCK, POLL_S, REPO, BenchError, TalkoverServer, cpu_ticks, wait_until
from gateway.bench.sipp_driver import SIPP, SippRun, speech_calls

DEFAULT_CALLS = (1, 2, 4)
DEFAULT_SECONDS = 20.0
DEFAULT_PLOT = REPO / "artifacts" / "bench_calls.png"

CONFIRM_TIMEOUT_S = 15.0  # SIPp started → N confirmed calls in /calls
SIPP_GRACE_S = 30.0  # SIPp's own -timeout beyond talk_ms, and our wait beyond that
IDLE_S, QUICK_IDLE_S = 3.0, 1.0  # idle CPU sample
SETTLE_S, QUICK_SETTLE_S = 1.0, 0.25  # after all calls confirmed, before the window
END_MARGIN_S, QUICK_END_MARGIN_S = 1.0, 0.25  # the window ends this long before the first BYE
# (the first BYE's time is a lower bound: SIPp's start, or the oldest call's offer, + talk_ms)
MIN_WINDOW_S, QUICK_MIN_WINDOW_S = 1.0, 0.3  # shorter steady windows are refused
STATUS_PERIOD_S = 1.0  # the worker reports /calls once a second


@dataclass
class CpuSample:
    worker_pct: float  # % of one core
    engine_pct: float
    seconds: float


@dataclass
class CallsResult:
    calls: int
    idle: CpuSample | None = None
    busy: CpuSample | None = None
    tick_p50_ms: float = 0.0  # worst call's
    tick_p99_ms: float = 0.0
    tick_max_ms: float = 0.0
    underruns: int = 0  # sum over calls
    frames_in: float = 0.0  # per call, at the end of the window
    frames_out: float = 0.0
    age_s: float = 0.0  # mean call age when /calls was read
    jitter: list[dict[str, Any]] = field(default_factory=list)
    sipp_rc: int | None = None
    server_rc: int | None = None
    warnings: int = 0  # server log events at warning level / error level or above, before SIGTERM
    errors: int = 0
    log_samples: list[str] = field(default_factory=list)
    stop_warnings: int = 0  # the same, logged after SIGTERM
    stop_errors: int = 0
    child_exits: dict[str, int] = field(default_factory=dict)  # engine / worker exit codes on SIGTERM
    problems: list[str] = field(default_factory=list)  # why this run does not count
    error: str = ""  # the run failed before it had figures

    @property
    def ok(self) -> bool:
        return not self.error and not self.problems and self.sipp_rc == 0 and self.server_rc == 0

    def _per_call(self, busy: float, idle: float) -> float:
        return (busy - idle) / self.calls if self.calls else 0.0

    @property
    def worker_per_call(self) -> float:
        assert self.busy is not None and self.idle is not None
        return self._per_call(self.busy.worker_pct, self.idle.worker_pct)

    @property
    def engine_per_call(self) -> float:
        assert self.busy is not None and self.idle is not None
        return self._per_call(self.busy.engine_pct, self.idle.engine_pct)




def _progress(text: str) -> None:
    print(f"bench calls: {text}", file=sys.stderr, flush=True)




def _sample_cpu(pids: tuple[int, int], seconds: float, check: Callable[[], None]) -> CpuSample:
    """CPU of (worker, engine) over `seconds`, checking `check` every POLL_S meanwhile."""
    t0, w0, e0 = time.monotonic(), cpu_ticks(pids[0]), cpu_ticks(pids[1])
    end = t0 + seconds
    while (now := time.monotonic()) < end:
        check()
        time.sleep(min(POLL_S, end - now))
    return _cpu_since(pids, t0, w0, e0)


def _cpu_since(pids: tuple[int, int], t0: float, w0: int, e0: int) -> CpuSample:
    w1, e1, t1 = cpu_ticks(pids[0]), cpu_ticks(pids[1]), time.monotonic()
    wall = t1 - t0
    pct = 100.0 / CLK_TCK / wall
    return CpuSample((w1 - w0) * pct, (e1 - e0) * pct, wall)


def _confirmed(server: TalkoverServer, n: int) -> list[dict[str, Any]]:
    calls = server.calls()
    live = [c for c in calls if c.get("phase") == "confirmed"]
    return live if len(live) >= n else []


def _first_bye(server: TalkoverServer, calls: list[dict[str, Any]], started: float, seconds: float) -> float:
    """A lower bound on when SIPp sends its first BYE (monotonic): the oldest call's offer
    (its age in /calls) + talk_ms, and never before SIPp's start + talk_ms. /calls is
    rewritten once a second, so this waits (bounded) for a fresh one to pin the age down."""
    stale_s, seen = STATUS_PERIOD_S, {c.get("call_id"): c.get("age_s") for c in calls}
    deadline = time.monotonic() + STATUS_PERIOD_S + 0.5
    while time.monotonic() < deadline:
        fresh = server.calls()
        if any(c.get("call_id") in seen and c.get("age_s") != seen[c.get("call_id")] for c in fresh):
            calls, stale_s = fresh, POLL_S  # written since the previous read, at most POLL_S ago
            break
        time.sleep(POLL_S / 2)
    now = time.monotonic()
    oldest_age = max(float(c.get("age_s", 0.0)) for c in calls) + stale_s
    return max(now - oldest_age, started) + seconds


def _measure_one(n: int, seconds: float, quick: bool, tmp: Path) -> CallsResult:
    res = CallsResult(n)
    work = tmp / f"n{n}"
    work.mkdir()
    server = TalkoverServer(work, n)
    sipp: SippRun | None = None
    try:
        health = server.start()
        worker = server.sip_worker(health)
        wpid, epid = int(worker["pid"]), server.engine_pid()
        if worker.get("max_calls") is not None and int(worker["max_calls"]) < n:
            raise BenchError(f"the worker takes {worker['max_calls']} calls at most (pjsua's cap); cannot bench {n}")
        _progress(f"N={n}: server up (sip {server.sip_host}, worker pid {wpid}, engine pid {epid}); idle CPU...")
        res.idle = _sample_cpu((wpid, epid), QUICK_IDLE_S if quick else IDLE_S, server.check_alive)
        _progress(f"N={n}: idle worker {res.idle.worker_pct:.1f} %, engine {res.idle.engine_pct:.1f} %")

        sipp = speech_calls(work, server.sip_host, "1000", calls=n, limit=n, rate_per_s=100, talk_s=seconds,
                            timeout_s=seconds + SIPP_GRACE_S, traces=False)  # fmt: skip
        sipp.start()
        started = time.monotonic()

        def all_confirmed() -> list[dict[str, Any]]:
            server.check_alive()
            if sipp is not None and sipp.poll() is not None:
                raise BenchError(f"SIPp exited {sipp.poll()} before {n} calls were confirmed{sipp.report()}")
            return _confirmed(server, n)

        calls = wait_until(all_confirmed, CONFIRM_TIMEOUT_S, f"{n} confirmed calls in /calls")
        settle_end = time.monotonic() + (QUICK_SETTLE_S if quick else SETTLE_S)
        _progress(f"N={n}: {n} calls confirmed {time.monotonic() - started:.1f} s after SIPp started")
        first_bye = _first_bye(server, calls, started, seconds)
        time.sleep(max(0.0, settle_end - time.monotonic()))
        window = first_bye - (QUICK_END_MARGIN_S if quick else END_MARGIN_S) - time.monotonic()
        if window < (QUICK_MIN_WINDOW_S if quick else MIN_WINDOW_S):
            raise BenchError(f"--seconds {seconds:g} leaves a steady window of {window:.1f} s; use more")

        def still_up() -> None:
            server.check_alive()
            if sipp is not None and sipp.poll() is not None:
                raise BenchError(f"SIPp exited {sipp.poll()} during the steady window{sipp.report()}")

        res.busy = _sample_cpu((wpid, epid), window, still_up)
        calls = server.calls()
        _take_calls(res, calls)
        _progress(
            f"N={n}: {res.busy.seconds:.1f} s window: worker {res.busy.worker_pct:.1f} %, engine "
            f"{res.busy.engine_pct:.1f} %; {len(calls)} calls, tick gap worst p99 {res.tick_p99_ms:.0f} ms "
            f"max {res.tick_max_ms:.0f} ms, underruns {res.underruns}"
        )
        for c in calls:
            j = c.get("jitter") or {}
            _progress(
                f"N={n}:   call {str(c.get('call_id', ''))[:12]} {c.get('codec', '')} in {c.get('frames_in')} "
                f"out {c.get('frames_out')} underruns {c.get('underruns')} tick {c.get('tick_gap')} "
                f"rx_lost {j.get('rx_lost')} jb lost/discard/empty {j.get('jb_lost')}/{j.get('jb_discard')}/"
                f"{j.get('jb_empty')} jitter {j.get('rx_jitter_mean_us')} µs"
            )
        if len(calls) != n:
            res.problems.append(f"/calls listed {len(calls)} calls at the end of the window, not {n}")

        res.sipp_rc = sipp.wait()
        if res.sipp_rc != 0:
            res.problems.append(f"SIPp exited {res.sipp_rc}")
            _progress(f"N={n}: SIPp exited {res.sipp_rc}{sipp.report()}")
        health_after = server.get_json("/healthz")[1]
        w = server.sip_worker(health_after)
        if w.get("restarts") or (w.get("pid") and int(w["pid"]) != wpid):
            res.problems.append(f"the SIP worker {w.get('name')} restarted during the run")
        if health_after.get("engine", {}).get("restarts"):
            res.problems.append("the engine restarted during the run")
    except BenchError as exc:
        res.error = str(exc)
        _progress(f"N={n}: FAILED: {exc}")
    finally:
        if sipp is not None:
            sipp.kill()
        stop_at = server.log_size()
        res.server_rc = server.stop()
        if res.server_rc != 0:
            res.problems.append(f"talkover serve exited {res.server_rc} on SIGTERM")
            _progress(f"N={n}: talkover serve exited {res.server_rc}:\n{server.log_tail()}")
        res.warnings, res.errors, res.log_samples = server.log_problems(0, stop_at)
        if res.warnings or res.errors:
            _progress(f"N={n}: server log before SIGTERM: {res.warnings} warnings, {res.errors} errors")
            for s in res.log_samples:
                _progress(f"N={n}:   {s}")
        res.child_exits = server.child_exits(stop_at)
        bad = {k: v for k, v in res.child_exits.items() if v != 0}
        if bad:
            _progress(
                f"N={n}: children exited non-zero on SIGTERM (the supervisor still exited {res.server_rc}): {bad}"
            )
        res.stop_warnings, res.stop_errors, samples = server.log_problems(stop_at)
        if res.stop_warnings or res.stop_errors:
            _progress(f"N={n}: server log during shutdown: {res.stop_warnings} warnings, {res.stop_errors} errors")
            for s in samples:
                _progress(f"N={n}:   {s}")
    return res


def _take_calls(res: CallsResult, calls: list[dict[str, Any]]) -> None:
    if not calls:
        return
    gaps = [c.get("tick_gap") or {} for c in calls]
    res.tick_p50_ms = max(float(g.get("p50_ms", 0.0)) for g in gaps)
    res.tick_p99_ms = max(float(g.get("p99_ms", 0.0)) for g in gaps)
    res.tick_max_ms = max(float(g.get("max_ms", 0.0)) for g in gaps)
    res.underruns = sum(int(c.get("underruns", 0)) for c in calls)
    res.frames_in = statistics.fmean(int(c.get("frames_in", 0)) for c in calls)
    res.frames_out = statistics.fmean(int(c.get("frames_out", 0)) for c in calls)
    res.age_s = statistics.fmean(float(c.get("age_s", 0.0)) for c in calls)
    res.jitter = [c.get("jitter") or {} for c in calls]


def measure(calls: list[int], seconds: float, quick: bool = False) -> list[CallsResult]:
    """One fresh server per N; a failed N is reported in its result, the others still run."""
    results = []
    with tempfile.TemporaryDirectory(prefix="talkover-bench-calls-") as tmp:
        for n in calls:
            _progress(f"N={n}: starting talkover serve ({seconds:g} s calls, {os.cpu_count()} CPUs)")
            results.append(_measure_one(n, seconds, quick, Path(tmp)))
    return results



def run(
    calls: list[int],
    seconds: float,
    quick: bool = False,
    *,
    plot_path: Path | None = DEFAULT_PLOT,
    results: list[CallsResult] | None = None,
) -> int:
    """`talkover bench calls --calls 1,2,4 --seconds 20`: measure, print the table, plot.

    Returns 0 when every N ran with SIPp and the server exiting 0, else 1 (2 for bad
    arguments). `results`, if given, receives the figures (for tests)."""
    if not calls or any(n < 1 for n in calls):
        print("talkover: --calls must list positive numbers, e.g. 1,2,4", file=sys.stderr)
        return 2
    if seconds <= 0:
        print("talkover: --seconds must be positive", file=sys.stderr)
        return 2
    from shutil import which

    if which(SIPP) is None:
        print(f"talkover: bench calls needs SIPp ({SIPP}) on PATH", file=sys.stderr)
        return 2
    got = measure(list(calls), seconds, quick)
    if results is not None:
        results.extend(got)
    print(report.format_table(got), flush=True)
    if plot_path is not None:
        _progress(report.plot(got, plot_path))
    failed = [r for r in got if not r.ok]
    for r in failed:
        _progress(f"N={r.calls} failed: {r.error or '; '.join(r.problems)}")
    return 1 if failed else 0


def parse_calls(text: str) -> list[int]:
    """`--calls 1,2,4` → [1, 2, 4] (for argparse's type=)."""
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError as exc:
        raise ValueError(f"--calls wants comma-separated numbers, got {text!r}") from exc


def add_arguments(p: Any) -> None:
    """`talkover bench calls`' options."""
    p.add_argument("--calls", default="1,2,4", help="comma-separated numbers of concurrent calls, a fresh server each")
    p.add_argument("--seconds", type=float, default=20.0, help="how long each call talks")


def from_args(args: Any) -> int:
    """What `talkover bench calls` runs: args.calls is the --calls text, args.seconds a float."""
    try:
        calls = parse_calls(str(args.calls))
    except ValueError as exc:
        print(f"talkover: {exc}", file=sys.stderr)
        return 2
    return run(calls, float(args.seconds))
