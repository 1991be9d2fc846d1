"""`talkover bench interruption`'s table (variants side by side) and plot."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import TYPE_CHECKING

from gateway.bench import barge_figures as figs
from gateway.bench import plotting

if TYPE_CHECKING:
    from gateway.bench.interruption import Plan, VariantResult

TARGET_P95_MS = 150.0


def latencies(r: "VariantResult") -> list[float]:
    return [c.latency_ms for c in r.of("barge") if c.measured and c.latency_ms is not None]


def false_barge_ins(r: "VariantResult", kinds: tuple[str, ...] = ("silent", "echo")) -> tuple[int, int]:
    """(the gateway's barge-in pauses, the engine's agent turns) over the calls whose caller
    never speaks."""
    calls = [c for c in r.calls if c.kind in kinds and c.agent_turn]
    return sum(c.gateway_pauses for c in calls), sum(max(1, c.agent_turns) for c in calls)


def greetings_cut(r: "VariantResult") -> tuple[int, int]:
    """(greetings that stopped on the wire with no caller speech, greetings observed): silent
    and echo calls, and barge-in/backchannel calls before the caller's onset."""
    calls = [c for c in r.calls if c.kind in ("silent", "echo", "barge", "backchannel") and c.agent_turn]
    return sum(1 for c in calls if c.greeting_cut), len(calls)


def backchannel_stops(r: "VariantResult") -> tuple[int, int]:
    calls = [c for c in r.of("backchannel") if c.measured]
    return sum(1 for c in calls if c.committed or (c.paused and not c.resumed)), len(calls)


def _ms(v: float) -> str:
    return "-" if math.isnan(v) else f"{v:.0f}"


def _rows(r: "VariantResult", plan: "Plan") -> list[tuple[str, str]]:
    rows: list[tuple[str, str]] = []
    runs = {k.kind: k for k in r.runs}
    sipp = ", ".join(f"{k.kind} {k.calls - k.failed}/{k.calls}" for k in r.runs) or "-"
    rows.append(("SIPp calls ok (per kind)", sipp))
    barge = r.of("barge")
    lat = latencies(r)
    rows.append(("barge-ins measured / placed", f"{len(lat)}/{len(barge)}"))
    rows.append(("barge-in latency p50 / p95 / max ms",
                 f"{_ms(figs.percentile(lat, 50))} / {_ms(figs.percentile(lat, 95))} / {_ms(max(lat) if lat else math.nan)}"))  # fmt: skip
    p95 = figs.percentile(lat, 95)
    rows.append((f"  target p95 <= {TARGET_P95_MS:.0f} ms", "-" if not lat else ("met" if p95 <= TARGET_P95_MS else "NOT met")))
    missed = sum(1 for c in barge if c.problem.startswith("missed"))
    rows.append(("barge-ins missed (no stop within 2 s)", f"{missed}/{len(barge)}"))
    other = sorted({c.problem for c in barge if c.problem and not c.problem.startswith("missed")})
    rows.append(("barge-in calls not counted", "; ".join(other)[:60] or "0"))
    stopped, n = backchannel_stops(r)
    back = [c for c in r.of("backchannel") if c.measured]
    paused = sum(1 for c in back if c.paused)
    resumed = sum(1 for c in back if c.resumed)
    committed = sum(1 for c in back if c.committed)
    rows.append(("backchannels: paused / playing again / committed", f"{paused} / {resumed} / {committed} of {n}"))
    rows.append(("backchannels that stopped the agent", f"{stopped}/{n}"))
    gaps = [c.pause_ms for c in back if c.pause_ms is not None]
    rows.append(("  backchannel pause p50 ms", _ms(figs.percentile(gaps, 50))))
    fb, turns = false_barge_ins(r)
    per100 = 100.0 * fb / turns if turns else math.nan
    rows.append(("false barge-ins per 100 agent turns", f"{per100:.1f} ({fb} in {turns})" if turns else "-"))
    for kind, label in (("silent", f"silent caller ({plan.noise_dbfs:g} dBFS noise)"), ("echo", "echo caller (0 dB)")):
        if kind in runs:
            pauses, n_turns = false_barge_ins(r, (kind,))
            rows.append((f"  {label}: pauses in turns", f"{pauses} in {n_turns}"))
    cut, greetings = greetings_cut(r)
    rows.append(("greetings cut, caller silent (wire)", f"{cut}/{greetings}"))
    hold = [c for c in r.of("hold") if c.measured]
    if hold or "hold" in runs:
        pk = sum(c.hold_speech_packets or 0 for c in hold)
        back_ok = sum(1 for c in hold if c.resumed_after_hold)
        rows.append(("hold: agent speech packets while held", f"{pk} in {len(hold)} calls"))
        rows.append(("hold: greeting continued after resume", f"{back_ok}/{len(hold)}"))
    rows.append(("playout underruns (all calls)", str(sum(c.underruns for c in r.calls))))
    rtt = [t for k in r.runs for t in k.response_ms]
    rows.append(("INVITE -> 200 p50 / p95 ms (SIPp)", f"{_ms(figs.percentile(rtt, 50))} / {_ms(figs.percentile(rtt, 95))}"))
    rows.append(("capture drops / server exit", f"{r.capture_dropped} / {r.server_rc}"))
    if r.error:
        rows.append(("ERROR", r.error[:60]))
    return rows


def table(results: list["VariantResult"], plan: "Plan", labels: list[str], load_avg: list[float] | None = None) -> str:
    columns = [_rows(r, plan) for r in results]
    names = [name for name, _ in columns[0]] if columns else []
    widths = [max(len(labels[i]), *(len(v) for _, v in col)) for i, col in enumerate(columns)]
    first = max([len("figure"), *(len(n) for n in names)])
    lines = ["  ".join(["figure".ljust(first), *(lab.rjust(w) for lab, w in zip(labels, widths))])]
    lines.append("-" * len(lines[0]))
    for i, name in enumerate(names):
        cells = [dict(col).get(name, "-") for col in columns]
        lines.append("  ".join([name.ljust(first), *(c.rjust(w) for c, w in zip(cells, widths))]))
    lines += [
        "",
        f"Latency: caller speech onset in the sent RTP (first packet above {figs.SPEECH_DBFS:g} dBFS, checked "
        "against the manifest's speech_start) -> first agent packet of a run of "
        f"{figs.SILENT_RUN} silent packets, from tcpdump timestamps on loopback; {plan.concurrent} calls at once, "
        f"caller stream {plan.barge_ms} ms after the ACK into an 8 s greeting. A backchannel stopped the agent if "
        f"the engine committed the barge-in or the agent did not play again within {figs.RESUME_S:g} s of the "
        "caller's last speech packet. False barge-ins: the gateway's barge-in pauses in calls whose caller never "
        "speaks (silent: noise only; echo: SIPp -rtp_echo) per agent utterance the engine started; greetings cut: "
        "the agent's RTP stopped before the greeting's end with no caller speech yet.",
    ]
    if load_avg:
        lines.append(f"Machine load average (1 min): {' -> '.join(f'{x:.1f}' for x in load_avg)} on {os.cpu_count()} CPUs.")
    return "\n".join(lines)


def plot(results: list["VariantResult"], path: Path) -> str:
    plt = plotting.pyplot()
    if plt is None:
        return plotting.NO_MATPLOTLIB
    if not results:
        return "plot skipped: no results"
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.5))
    for r in results:
        lat, placed = sorted(latencies(r)), len(r.of("barge"))
        if lat:  # over every barge-in placed: missed ones keep the curve below 1
            ys = [0.0] + [(i + 1) / placed for i in range(len(lat))]
            ax1.step([lat[0], *lat], ys, where="post", marker=".", label=f"{r.name} ({len(lat)} of {placed} stopped)")
    ax1.axvline(TARGET_P95_MS, color="grey", linestyle="--", linewidth=1)
    ax1.axhline(0.95, color="grey", linestyle=":", linewidth=1)
    ax1.set_xlabel("barge-in latency, ms (caller onset -> agent silent, on the wire)")
    ax1.set_ylabel("fraction of barge-ins placed")
    ax1.set_ylim(0, 1.02)
    ax1.grid(True, alpha=0.3)
    ax1.legend(loc="lower right")
    names = [r.name for r in results]
    fb = [false_barge_ins(r) for r in results]
    bc = [backchannel_stops(r) for r in results]
    missed = [(len(r.of("barge")) - len(latencies(r)), len(r.of("barge"))) for r in results]
    x = range(len(results))
    for k, (pairs, label) in enumerate(((missed, "% barge-ins with no stop measured"), (fb, "false barge-ins / 100 turns"),
                                        (bc, "% backchannels that stopped it"))):  # fmt: skip
        ax2.bar([i + (k - 1) * 0.27 for i in x], [100 * a / b if b else 0 for a, b in pairs], width=0.27, label=label)
    ax2.set_xticks(list(x), names)
    ax2.set_ylabel("%")
    ax2.grid(True, axis="y", alpha=0.3)
    ax2.legend()
    fig.suptitle(f"talkover bench interruption ({os.cpu_count()} CPUs, SIPp G.711, one worker)")
    return plotting.save(fig, path)
