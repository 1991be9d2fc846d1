"""`talkover bench pool`'s tables and plot."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from gateway.bench import plotting
from gateway.bench.barge_figures import percentile
from gateway.bench.server import toml_value

if TYPE_CHECKING:
    from gateway.bench.pool_meter import Usage
    from gateway.bench.pool_plan import PoolResult, PoolRun, PoolStep

TARGET_HELD, TARGET_RATE = 150, 50.0  # issue 7, on a 2-core machine
NOT_STAGES = "pjsua2 + rest of the worker"


def _table(head: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(head)]
    line = "  ".join(h.rjust(w) for h, w in zip(head, widths))
    return [line, "-" * len(line)] + ["  ".join(c.rjust(w) for c, w in zip(r, widths)) for r in rows]


def _ms(values: list[float], q: float) -> str:
    v = percentile(values, q)
    return "-" if v != v else f"{v:.0f}"


def _per_call(step: PoolStep, idle: Usage, key: str) -> float:
    n = step.value if step.phase == "hold" else 0
    u = step.usage
    if not n or not u.window_s:
        return float("nan")
    if key == "server":
        return (u.server_pct - idle.server_pct) / n
    return (u.cpu.get(key, 0.0) - idle.cpu.get(key, 0.0)) / n


def best_hold(run: PoolRun) -> PoolStep | None:
    passed = [s for s in run.hold if s.passed and s.usage.window_s]
    return passed[-1] if passed else None


def _budget(per_min: float) -> str:
    return "0 underruns" if not per_min else f"at most {per_min:g} underruns per call-minute (--underrun-budget)"


def _underruns(s: PoolStep) -> str:
    return f"{s.underruns} ({s.underruns / s.call_minutes:.1f}/min)" if s.call_minutes else str(s.underruns)


def limit(run: PoolRun) -> str:
    """What stopped the hold steps: pjsua2's cap, the machine (a step below the cap failed), a step
    whose results could not be read, or the end of the list."""
    if run.max_held >= run.cap:
        return "cap"
    if any(not s.passed and not s.unreadable and s.value <= run.cap for s in run.hold):
        return "machine"  # a step failed (the last one, or one above the step-down that passed)
    if run.hold and run.hold[-1].unreadable:
        return "unreadable"  # the climb stopped on a step whose results could not be read
    return "steps" if run.hold else "-"


def _x(value: float, base: float) -> str:
    return f"{value / base:.1f}x" if base else "-"


_CALLERS = {"loop": "looping speech, replies over it", "turns": "3 s turns, replies in 4 s pauses"}


def summary(res: PoolResult) -> list[str]:
    p = res.plan
    out = [f"talkover bench pool: the whole machine ({os.cpu_count()} CPUs), SIP workers behind Kamailio, "
           f"echo agent, full media chain, G.711 both ways, callers: {_CALLERS[p.caller]}"
           + "".join(f", {t}.{k} = {toml_value(v)}" for t, kv in p.settings.items() for k, v in kv.items()), ""]  # fmt: skip
    head = ["workers", "front door", f"held {p.hold_s:g} s", "vs 1 worker", f"calls/s ({p.call_s:g} s calls)",
            "vs 1 worker", "limit", "CPU %/call", "MB/call", "idle CPU %", "idle MB", "first call ms p50/max"]  # fmt: skip
    rows = []
    base = res.runs[0] if res.runs and res.runs[0].workers == 1 else None
    for r in res.runs:
        best = best_hold(r)
        cpu = _per_call(best, r.idle, "server") if best else float("nan")
        mb = best.usage.pss_mb / best.value if best else float("nan")  # every server process, shared pages split
        held_limit = limit(r)
        rows.append([str(r.workers), "Kamailio" if r.workers > 1 else "none (baseline)", str(r.max_held),
                     _x(r.max_held, base.max_held) if base else "-", f"{r.max_rate:g}",
                     _x(r.max_rate, base.max_rate) if base else "-",
                     f"cap ({r.cap} calls)" if held_limit == "cap" else held_limit,
                     f"{cpu:.1f}", f"{mb:.1f}", f"{r.idle.server_pct:.1f}", f"{r.idle.pss_mb:.0f}",
                     f"{_ms(r.first_call_ms, 50)}/{_ms(r.first_call_ms, 100)}"])  # fmt: skip
    out += _table(head, rows)
    held = max([r.max_held for r in res.runs] or [0])
    rate = max([r.max_rate for r in res.runs] or [0.0])
    out.append(f"whole machine: {held} concurrent calls held {p.hold_s:g} s (target >= {TARGET_HELD}: "
               f"{'met' if held >= TARGET_HELD else 'NOT met'}), {rate:g} calls/s of {p.call_s:g} s calls "
               f"(target >= {TARGET_RATE:g}: {'met' if rate >= TARGET_RATE else 'NOT met'}); "
               f"each with 0 failed calls, {_budget(p.underrun_budget)}, audio both ways")  # fmt: skip
    if res.stopped_early:
        out.append(f"stopped adding workers: {res.stopped_early}")
    return out


def details(res: PoolResult) -> list[str]:
    out = ["", "(a) concurrent calls held (CPU in % of one core over the steady window; /call = minus idle, / N)"]
    head = ["workers", "calls", "ok/failed", "underruns", "both ways", "retried", "workers %", "engine %",
            "kamailio %", "talkover /call", "SIPp %", "machine %", "PSS MB (+/call)", "clock gap max ms",
            "INVITE->200 p50/p95 ms", "pass"]  # fmt: skip
    rows = []
    for r in res.runs:
        for s in r.hold:
            u = s.usage
            rows.append([str(r.workers), f"{s.value:g}", f"{s.ok}/{s.failed}", _underruns(s),
                         f"{s.both_ways}/{s.ended}", str(s.retried), f"{u.cpu.get('workers', 0):.0f}",
                         f"{u.cpu.get('engine', 0):.0f}", f"{u.cpu.get('kamailio', 0):.0f}",
                         f"{_per_call(s, r.idle, 'server'):.1f}", f"{u.cpu.get('sipp', 0):.0f}",
                         f"{u.machine_pct:.0f}", f"{u.pss_mb:.0f} ({(u.pss_mb - r.idle.pss_mb) / s.value:+.1f})",
                         f"{s.tick_gap_max_ms:.0f}",
                         f"{_ms(s.response_ms, 50)}/{_ms(s.response_ms, 95)}",
                         "yes" if s.passed else f"NO {s.reason}"[:40]])  # fmt: skip
    out += _table(head, rows)
    out += ["", f"(b) calls per second ({res.plan.call_s:g} s calls placed for {res.plan.rate_s:g} s; CPU over the step)"]
    head = ["workers", "calls/s", "placed", "ok/failed", "underruns", "both ways", "retried", "talkover %",
            "SIPp %", "machine %", "CPU s/call", "INVITE->200 p50/p95/max ms", "pass"]  # fmt: skip
    rows = []
    for r in res.runs:
        for s in r.rate:
            u = s.usage
            cpu_s = u.server_pct / 100 * u.window_s / s.ok if s.ok else float("nan")
            rows.append([str(r.workers), f"{s.value:g}", str(s.placed), f"{s.ok}/{s.failed}", _underruns(s),
                         f"{s.both_ways}/{s.ended}", str(s.retried), f"{u.server_pct:.0f}", f"{u.cpu.get('sipp', 0):.0f}",
                         f"{u.machine_pct:.0f}", f"{cpu_s:.2f}",
                         f"{_ms(s.response_ms, 50)}/{_ms(s.response_ms, 95)}/{_ms(s.response_ms, 100)}",
                         "yes" if s.passed else f"NO {s.reason}"[:40]])  # fmt: skip
    out += _table(head, rows)
    return out


PARENT = {"aec": "inbound", "ns": "inbound", "vad": "inbound", "aec_far": "outbound"}  # gateway/media stages


def breakdown(run: PoolRun) -> list[tuple[str, float, float, bool]]:
    """(part, µs per 20 ms frame or nan, % of one core per call, counted in the total) at the
    run's best hold step. The chain's `inbound` stage contains aec/ns/vad and `outbound`
    contains aec_far (gateway/media/inbound.py, chain.py): sub-stages are listed indented."""
    best = best_hold(run)
    if best is None:
        return []
    n, u = best.value, best.usage
    tops = [st for st in u.stage_pct if PARENT.get(st) not in u.stage_pct]
    parts: list[tuple[str, float, float, bool]] = []
    for top in sorted(tops):
        parts.append((f"media {top}", u.stage_us.get(top, 0.0), u.stage_pct[top] / n, False))
        subs = sorted(st for st in u.stage_pct if PARENT.get(st) == top)
        for sub in subs:
            parts.append((f"  {sub}", u.stage_us.get(sub, 0.0), u.stage_pct[sub] / n, False))
        if subs:
            rest_us = u.stage_us.get(top, 0.0) - sum(u.stage_us.get(x, 0.0) for x in subs)
            rest = (u.stage_pct[top] - sum(u.stage_pct[x] for x in subs)) / n
            parts.append(("  rest of the stage", rest_us, rest, False))
    worker = _per_call(best, run.idle, "workers")
    parts.append(("media chain, all stages", float("nan"), sum(u.stage_pct[t] for t in tops) / n, True))
    parts.append((NOT_STAGES, float("nan"), worker - sum(u.stage_pct[t] for t in tops) / n, True))
    for group in ("engine", "kamailio", "supervisor"):
        parts.append((group, float("nan"), _per_call(best, run.idle, group), True))
    parts.append(("SIPp (load generator, same machine)", float("nan"), u.cpu.get("sipp", 0.0) / n, False))
    return parts


def breakdown_table(res: PoolResult) -> list[str]:
    runs = [r for r in res.runs if best_hold(r) is not None]
    if not runs:
        return []
    run = max(runs, key=lambda r: (r.max_held, -r.workers))
    best = best_hold(run)
    assert best is not None
    out = ["", f"(c) CPU per call by part: {run.workers} workers holding {best.value:g} calls (media stages: "
           "the clock thread's CPU time from /metrics; the rest from /proc, minus idle)"]  # fmt: skip
    parts = breakdown(run)
    rows = [[name, "-" if us != us else f"{us:.0f}", f"{pct:.2f}"] for name, us, pct, _ in parts]
    out += _table(["part", "µs per frame", "% of a core per call"], rows)
    total = sum(pct for _, _, pct, counted in parts if counted and pct == pct)
    if total > 0:
        out.append(f"talkover total {total:.2f} % of a core per call -> {100 * (os.cpu_count() or 1) / total:.0f} "
                   f"calls would fill all {os.cpu_count()} CPUs")  # fmt: skip
    return out


def tables(res: PoolResult) -> str:
    out = summary(res) + details(res) + breakdown_table(res)
    for r in res.runs:
        for s in r.hold + r.rate:
            if s.unreadable:
                out.append(f"UNREADABLE ({r.workers} workers, {s.phase} {s.value:g}; not counted as passed): "
                           + "; ".join(s.unreadable))
        if r.error:
            out.append(f"ERROR ({r.workers} workers): {r.error}")
    if res.load_avg:
        out.append(f"machine load average (1 min): {' -> '.join(f'{x:.1f}' for x in res.load_avg)} on "
                   f"{os.cpu_count()} CPUs (other work on the machine shows up in every figure)")  # fmt: skip
    out += ["", f"held/calls/s: the highest step with SIPp exit 0, 0 failed calls, {_budget(res.plan.underrun_budget)} "
            "(a 20 ms tick inside an agent utterance with no frame from the engine) and audio both "
            "ways on every call (the workers' call summaries: caller frames through the chain >= 70 % of the call's "
            "ticks, agent audio handed to the sender). first call: INVITE->200 of one warm-up call per fresh worker, placed before measuring (a worker's first call loads the media libraries). limit: cap = pjsua2's 4 calls per worker, machine = a step "
            "below the cap failed. retried = INVITEs a worker refused that Kamailio sent to another (not failures). "
            "CPU from /proc/<pid>/stat of every server process (talkover = supervisor + engine + workers + Kamailio); "
            "machine % from /proc/stat (includes SIPp and anything else running). Memory: PSS of every server process; "
            "MB/call = that total at the best hold step / its calls (call ports are made when a worker starts, so "
            "memory grows with workers, not calls: +/call = the change from idle, per call)."]  # fmt: skip
    return "\n".join(out)


def plot(res: PoolResult, path: Path) -> str:
    plt = plotting.pyplot()
    if plt is None:
        return plotting.NO_MATPLOTLIB
    if not res.runs:
        return "plot skipped: nothing ran"
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.8))
    ws = [r.workers for r in res.runs]
    ax1.plot(ws, [r.max_held for r in res.runs], marker="o", label=f"calls held {res.plan.hold_s:g} s")
    ax1.plot(ws, [r.cap for r in res.runs], ls=":", color="grey", label="pjsua2 cap (4 / worker)")
    ax1.axhline(TARGET_HELD, color="red", ls="--", lw=1, label=f"target {TARGET_HELD} held")
    ax1.set_xscale("log", base=2)
    ax1.set_xticks(ws, [str(w) for w in ws])
    ax1.set_xlabel("SIP workers (1 = no front door; more = behind Kamailio)")
    ax1.set_ylabel("concurrent calls")
    twin = ax1.twinx()
    twin.plot(ws, [r.max_rate for r in res.runs], marker="s", color="tab:green", label="calls/s")
    twin.axhline(TARGET_RATE, color="tab:green", ls="--", lw=1, label=f"target {TARGET_RATE:g} calls/s")
    twin.set_ylabel(f"calls per second ({res.plan.call_s:g} s calls)")
    h1, l1 = ax1.get_legend_handles_labels()
    h2, l2 = twin.get_legend_handles_labels()
    ax1.legend(h1 + h2, l1 + l2, fontsize=8, loc="upper left")
    ax1.grid(True, alpha=0.3)
    runs = [r for r in res.runs if best_hold(r) is not None]
    if runs:
        run = max(runs, key=lambda r: (r.max_held, -r.workers))
        parts = [(name.strip(), pct) for name, _, pct, counted in breakdown(run)  # parts that do not overlap
                 if pct == pct and pct > 0 and (name.startswith("  ") or counted) and not name.startswith("media chain")]
        ax2.barh([n for n, _ in parts], [p for _, p in parts], color="tab:blue")
        ax2.set_xlabel("% of one core per call")
        ax2.set_title(f"CPU per call by part ({run.workers} workers, {best_hold(run).value:g} calls)", fontsize=10)  # type: ignore[union-attr]
        ax2.invert_yaxis()
        ax2.tick_params(axis="y", labelsize=8)
    fig.suptitle(f"talkover bench pool ({os.cpu_count()} CPUs, echo agent, full media chain)")
    return plotting.save(fig, path)
