"""`talkover bench load`'s tables and plot."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from gateway.bench import plotting
from gateway.bench.barge_figures import percentile

if TYPE_CHECKING:
    from gateway.bench.load import LoadPlan, LoadResult, Step


def _ms(values: list[float], q: float) -> str:
    v = percentile(values, q)
    return "-" if v != v else f"{v:.0f}"


def _rtp(s: "Step") -> tuple[str, str, str]:
    r = s.rtp
    if r is None:
        return "-", "-", "-"
    return f"{r.both_ways}/{r.calls}", str(r.lost), f"{r.agent_gap_p99_ms:.0f}/{r.agent_gap_max_ms:.0f} ({r.caller_gap_p99_ms:.0f})"


def _table(head: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(head)]
    line = "  ".join(h.rjust(w) for h, w in zip(head, widths))
    return [line, "-" * len(line)] + ["  ".join(c.rjust(w) for c, w in zip(r, widths)) for r in rows]


def tables(res: "LoadResult", plan: "LoadPlan") -> str:
    out: list[str] = [f"(a) concurrent calls held {plan.hold_s:g} s, one worker (cap {res.cap} calls)"]
    head = ["calls", "worker %", "engine %", "w /call", "e /call", "ok/failed", "underruns", "refused",
            "RTP both ways", "RTP lost", "agent gap p99/max (caller p99) ms", "INVITE->200 p50/p95/max ms", "pass"]  # fmt: skip
    rows = [["0 (idle)", f"{res.idle_worker_pct:.1f}", f"{res.idle_engine_pct:.1f}", "-", "-", "-", "-", "-", "-",
             "-", "-", "-", "baseline"]]  # fmt: skip
    for s in res.hold:
        n = int(s.value)
        w_call = (s.worker_pct - res.idle_worker_pct) / n if s.window_s else float("nan")
        e_call = (s.engine_pct - res.idle_engine_pct) / n if s.window_s else float("nan")
        both, lost, gap = _rtp(s)
        rows.append([str(n), f"{s.worker_pct:.1f}", f"{s.engine_pct:.1f}", f"{w_call:.1f}", f"{e_call:.1f}",
                     f"{s.ok_calls}/{s.failed}", str(s.underruns), str(s.rejected), both, lost, gap,
                     f"{_ms(s.response_ms, 50)}/{_ms(s.response_ms, 95)}/{_ms(s.response_ms, 100)}",
                     "yes" if s.passed else f"NO {s.error}"[:40]])  # fmt: skip
    out += _table(head, rows)
    held = [int(s.value) for s in res.hold if s.passed]
    out.append(f"most concurrent calls held {plan.hold_s:g} s with 0 failed calls and 0 underruns: "
               f"{max(held) if held else 0}" + (" (the worker's cap)" if held and max(held) == res.cap else ""))  # fmt: skip
    out += ["", f"(b) calls per second, {plan.call_s:g} s calls placed for {plan.rate_s:g} s"]
    head = ["calls/s", "placed", "ok/failed", "refused", "underruns", "worker %", "engine %", "CPU s/call",
            "RTP both ways", "RTP lost", "agent gap p99/max (caller p99) ms", "INVITE->200 p50/p95/p99/max ms", "pass"]  # fmt: skip
    rows = []
    for s in res.rate:
        cpu_s = (s.worker_pct + s.engine_pct) / 100 * s.window_s / s.ok_calls if s.ok_calls else float("nan")
        both, lost, gap = _rtp(s)
        r = s.response_ms
        rows.append([f"{s.value:g}", str(s.placed), f"{s.ok_calls}/{s.failed}", str(s.rejected), str(s.underruns),
                     f"{s.worker_pct:.1f}", f"{s.engine_pct:.1f}", f"{cpu_s:.2f}", both, lost, gap,
                     f"{_ms(r, 50)}/{_ms(r, 95)}/{_ms(r, 99)}/{_ms(r, 100)}",
                     "yes" if s.passed else f"NO {s.error}"[:40]])  # fmt: skip
    out += _table(head, rows)
    ok = [s.value for s in res.rate if s.passed]
    out.append(f"highest rate of {plan.call_s:g} s calls sustained {plan.rate_s:g} s with 0 failures: "
               f"{max(ok):g} calls/s" if ok else "no rate passed")  # fmt: skip
    if res.error:
        out.append(f"ERROR: {res.error}")
    if res.load_avg:
        out.append(f"machine load average (1 min): {' -> '.join(f'{x:.1f}' for x in res.load_avg)} "
                   f"on {os.cpu_count()} CPUs (other work on the machine shows up in every figure)")  # fmt: skip
    out += [
        "",
        "CPU: % of one core from /proc/<pid>/stat (worker = pjsua2 + media chain, engine = echo agent); "
        "/call = (busy - idle) / N over the steady window; CPU s/call = worker+engine CPU seconds over the "
        "step / calls completed. refused: the gateway's 503s + pjsua's 486s (/metrics). RTP from a loopback "
        "capture: both ways = calls with >= 80 % of the expected packets each way; lost = sequence gaps; "
        "agent gap = time between the gateway's consecutive RTP packets of a call (20 ms when the media "
        "clock keeps time; in brackets the same for SIPp's caller stream, the baseline). INVITE->200 from SIPp -trace_rtt (1 ms resolution). SIPp runs from 127.0.0.1, "
        "which the bench's config allow-lists in [sip.flood] (the limit stays on).",
    ]
    return "\n".join(out)


def plot(res: "LoadResult", plan: "LoadPlan", path: Path) -> str:
    plt = plotting.pyplot()
    if plt is None:
        return plotting.NO_MATPLOTLIB
    if not res.hold and not res.rate:
        return "plot skipped: no step ran"
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.5))
    hold = [s for s in res.hold if s.window_s]
    if hold:
        ns = [int(s.value) for s in hold]
        ax1.plot(ns, [(s.worker_pct - res.idle_worker_pct) / int(s.value) for s in hold], marker="o", label="worker / call")
        ax1.plot(ns, [(s.engine_pct - res.idle_engine_pct) / int(s.value) for s in hold], marker="s", label="engine / call")
        for s in hold:
            if not s.passed:
                ax1.annotate("fail", (int(s.value), 0), color="red")
        ax1.set_xticks(ns, [str(n) for n in ns])
        ax1.legend()
    ax1.set_xlabel(f"concurrent calls held {plan.hold_s:g} s")
    ax1.set_ylabel("CPU per call, % of one core (minus idle)")
    ax1.set_ylim(bottom=0)
    ax1.grid(True, alpha=0.3)
    if res.rate:
        rates = [s.value for s in res.rate]
        ax2.plot(rates, [percentile(s.response_ms, 50) for s in res.rate], marker="o", label="INVITE->200 p50")
        ax2.plot(rates, [percentile(s.response_ms, 95) for s in res.rate], marker="^", label="INVITE->200 p95")
        ax2.set_ylabel("ms")
        twin = ax2.twinx()
        twin.bar(rates, [s.failed for s in res.rate], width=0.03, color="red", alpha=0.4, label="failed calls")
        twin.set_ylabel("failed calls")
        ax2.legend(loc="upper left")
    ax2.set_xlabel(f"calls per second ({plan.call_s:g} s calls for {plan.rate_s:g} s)")
    ax2.grid(True, alpha=0.3)
    fig.suptitle(f"talkover bench load ({os.cpu_count()} CPUs, one worker, G.711 both ways)")
    return plotting.save(fig, path)
