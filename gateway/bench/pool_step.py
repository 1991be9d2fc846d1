"""One step of `talkover bench pool`: SIPp places the step's calls, the servers' CPU and memory
are metered over its steady window, and its figures are read back from SIPp's traces, the
workers' "call ended" summaries and /metrics; the warm-up call on every worker before it."""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

from gateway.bench.pool_meter import Meter
from gateway.bench.pool_plan import PoolPlan, PoolStep
from gateway.bench.pool_server import PoolServer
from gateway.bench.server import BenchError, wait_until
from gateway.bench.sipp_driver import SippRun, progress, rate_calls, speech_calls

RAMP_PER_S = 20.0  # how fast a hold step places its calls
SETTLE_S, PROGRESS_S = 1.0, 5.0
LEFTOVER_S = 40.0  # after SIPp ended, every call must be gone (pjsip's no-ACK timeout is 32 s)
CALLER_SHARE, AGENT_FRAMES = 0.7, 10  # audio both ways: caller frames vs ticks, agent frames sent


def audio_figures(step: PoolStep, records: list[dict[str, Any]], tag: str) -> None:
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


def _audio(plan: PoolPlan) -> dict[str, str]:
    return {"rtp_file": plan.rtp_file} if plan.rtp_file else {}


def run_step(step: PoolStep, server: PoolServer, work: Path, plan: PoolPlan) -> None:
    tag = f"w{step.workers}{step.phase}{step.value:g}".replace(".", "_")
    log_at = server.log_size()
    retried0 = server.metric("talkover_calls_total", 'outcome="rejected"') + server.metric(
        "talkover_sip_rejected_by_pjsua_total")
    if step.phase == "hold":
        n = int(step.value)
        sipp = speech_calls(work / tag, server.sip_host, tag, calls=n, limit=n, rate_per_s=RAMP_PER_S,
                            talk_s=plan.hold_s, timeout_s=plan.hold_s + n / RAMP_PER_S + 30,
                            **_audio(plan))  # fmt: skip
    else:
        sipp = rate_calls(work / tag, server.sip_host, tag, step.value, plan.rate_s, plan.call_s, **_audio(plan))
    n = sipp.calls
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
        wait_until(lambda: not mine(), LEFTOVER_S, "the gateway to end every call")
    except BenchError:
        left = mine()  # raises if the server died
        if left:  # else they ended just after the deadline
            step.error = f"{len(left)} call(s) still up {LEFTOVER_S:g} s after SIPp ended ({left[0].get('phase')})"
            progress("pool", f"{tag}: {step.error}: {[c.get('call_id') for c in left]}")
    try:
        wait_until(lambda: len([r for r in server.log_records("call ended", log_at)
                                 if r.get("called") == tag]) >= step.ok, 10, "every call's summary in the log")
    except BenchError:
        step.error = step.error or "a call's summary is missing from the log (audio not verified)"
    audio_figures(step, server.log_records("call ended", log_at), tag)
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
        sipp = speech_calls(work / f"w{w}{tag}", server.sip_host, tag, calls=w, limit=w, rate_per_s=RAMP_PER_S,
                            talk_s=1.0, timeout_s=60 + w)  # fmt: skip
        sipp.start()
        sipp.wait(lambda _: server.check_alive(), every_s=1.0)
        try:
            times += sipp.response_times_ms()
        except OSError as exc:  # only a figure for the table: the warm-up still counts
            progress("pool", f"warm-up response times unreadable: {exc}")
        wait_until(lambda: server.check_alive() or not server.calls(), 20, "the warm-up calls to end")
        seen |= {str(r.get("process")) for r in server.log_records("call ended", log_at)}
        if len(seen) >= w:
            break
    if len(seen) < w:
        raise BenchError(f"warm-up reached {len(seen)} of {w} workers in 3 rounds: {sorted(seen)}")
    return times

