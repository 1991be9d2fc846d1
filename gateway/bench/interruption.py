"""`talkover bench interruption`: how fast the agent stops when the caller talks over it,
and how often it stops when it should not — measured on the wire.

For each media variant (default: the config's defaults, and the pre-AEC energy VAD as the
baseline) a fresh `talkover serve` answers every number with the echo agent and an 8 s
greeting (`greeting = "long"`, interruptible); tcpdump captures its SIP and RTP on loopback
while SIPp (sipp_scenarios/uac_barge_in.xml, uac_hold.xml) places, `--concurrent` at a time:

    barge        long_joe.ulaw streamed --barge-ms after the ACK, inside the greeting
    backchannel  mmhm_joe.ulaw ("Mm-hm.") at the same point
    silent       white noise at --noise-dbfs for the whole greeting (says nothing)
    echo         SIPp -rtp_echo: the agent's own audio comes straight back (0 dB echo)
    hold         re-INVITE sendonly / inactive / sendrecv during the greeting

and the figures come from the capture (gateway/bench/barge_figures.py): barge-in latency
p50/p95 (target <= 150 ms p95), false barge-ins per 100 agent turns, backchannels that
stopped the agent (the engine's turn notes say whether it committed), agent speech packets
while on hold; SIPp's -trace_rtt gives the INVITE→200 times. Progress on stderr, the table
(variants side by side) on stdout, a PNG in artifacts/.
"""

from __future__ import annotations

import dataclasses
import math
import os
import sys
import time
import wave
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.agents.prompts import load_prompt
from gateway.bench import barge_figures as figs
from gateway.bench import interruption_report as report
from gateway.bench.capture import Capture, CaptureError, read_calls
from gateway.bench.sipp_driver import (
    AUDIO,
    BenchError,
    BenchServer,
    SippRun,
    SippStats,
    keep_dir_problem,
    manifest_clip,
    media_overrides,
    progress,
    work_dir,
    write_noise_ulaw,
)
from gateway.config import MediaConfig

REPO = Path(__file__).resolve().parents[2]
DEFAULT_PLOT = REPO / "artifacts" / "bench_interruption.png"
VARIANTS: dict[str, dict[str, Any]] = {
    "default": {},  # whatever gateway/config.py's MediaConfig defaults are
    "energy": {"aec": False, "vad": "energy"},  # the first chain: energy VAD, no echo canceller
    "no-ns": {"noise": "off"},  # AEC and detector as default, no noise suppression
    "no-aec": {"aec": False},  # detector as default, no echo canceller
}
BARGE_CLIP, BACKCHANNEL_CLIP = "long_joe", "mmhm_joe"
SETUP_S = 0.5  # INVITE → ACK and SIPp's scheduling, on top of the scenario's pauses


@dataclass
class Plan:
    barge: int = 60
    backchannel: int = 20
    silent: int = 20
    echo: int = 12
    hold: int = 4
    concurrent: int = 4  # one worker takes 4 calls (pjsua's cap)
    barge_ms: int = 1500  # ACK → the caller's stream starts (its speech 0.5 s later)
    listen_ms: int = 0  # silent/echo calls: how long they listen (0 = the whole greeting)
    noise_dbfs: float = -55.0
    greeting: str = "long"
    barge_in_min_ms: int = 0  # 0 = the dialplan's default
    variants: list[str] = field(default_factory=lambda: ["default", "energy"])
    parallel: bool = False  # all kinds at once (quick mode), else one kind after another
    workdir: str = ""  # keep captures and logs here ("" = a temp dir, removed)

    @classmethod
    def quick(cls) -> "Plan":
        return cls(barge=2, backchannel=1, silent=0, echo=1, hold=1, listen_ms=3000, parallel=True)


@dataclass
class KindRun:
    kind: str
    calls: int
    sipp_rc: int | None = None
    failed: int = 0
    response_ms: list[float] = field(default_factory=list)


@dataclass
class VariantResult:
    name: str
    media: dict[str, Any]
    dropped_keys: list[str] = field(default_factory=list)
    runs: list[KindRun] = field(default_factory=list)
    calls: list[figs.CallFigures] = field(default_factory=list)
    server_rc: int | None = None
    capture_dropped: int = 0
    error: str = ""

    @property
    def ok(self) -> bool:
        return not self.error and self.server_rc == 0 and all(r.sipp_rc == 0 for r in self.runs)

    def of(self, kind: str) -> list[figs.CallFigures]:
        return [c for c in self.calls if c.kind == kind]


def describe(name: str, media: dict[str, Any]) -> str:
    """A variant's label with what it actually ran (aec/vad/noise as resolved)."""
    cfg = dataclasses.replace(MediaConfig(), **media)
    parts = [f"{k}={getattr(cfg, k)}" for k in ("aec", "noise", "vad") if hasattr(cfg, k)]
    return f"{name} ({', '.join(parts)})" if parts else name


# -- one variant ----------------------------------------------------------------------------------------


def _kind_runs(plan: Plan, server: BenchServer, work: Path, greeting_s: float) -> list[tuple[str, SippRun]]:
    listen_ms = plan.listen_ms or int(greeting_s * 1000) + 500
    noise = write_noise_ulaw(work / "noise.ulaw", listen_ms / 1000 + 1, plan.noise_dbfs)
    silence = write_noise_ulaw(work / "silence.ulaw", 2, -130)
    barge_after = int(manifest_clip(BARGE_CLIP)["speech_start_s"] * 1000) + int(figs.MAX_STOP_S * 1000) + 500
    back_clip = manifest_clip(BACKCHANNEL_CLIP)
    back_after = int(back_clip["speech_end_s"] * 1000) + int(figs.RESUME_S * 1000) + 1000
    hold_ms = 1000
    specs = [  # kind, calls, scenario, keys, sets, extra, seconds per call
        ("barge", plan.barge, "uac_barge_in.xml", {"rtp_file": f"{AUDIO / (BARGE_CLIP + '.ulaw')},1,0"},
         {"barge_ms": plan.barge_ms, "after_ms": barge_after}, (), plan.barge_ms + barge_after),
        ("backchannel", plan.backchannel, "uac_barge_in.xml", {"rtp_file": f"{AUDIO / (BACKCHANNEL_CLIP + '.ulaw')},1,0"},
         {"barge_ms": plan.barge_ms, "after_ms": back_after}, (), plan.barge_ms + back_after),
        ("silent", plan.silent, "uac_barge_in.xml", {"rtp_file": f"{noise},1,0"},
         {"barge_ms": 100, "after_ms": listen_ms}, (), 100 + listen_ms),
        ("echo", plan.echo, "uac_barge_in.xml", {"rtp_file": f"{silence},1,0"},
         {"barge_ms": 100, "after_ms": listen_ms, "mute": 1}, ("-rtp_echo",), 100 + listen_ms),
        ("hold", plan.hold, "uac_hold.xml", {"rtp_file": f"{silence},1,0"}, {"hold_ms": hold_ms}, (), 4 * hold_ms),
    ]  # fmt: skip
    wanted = [s for s in specs if s[1] > 0]
    runs = []
    for kind, n, scenario, keys, sets, extra, call_ms in wanted:
        limit = 1 if plan.parallel else min(plan.concurrent, n)
        if plan.parallel and kind == "barge":
            limit = max(1, plan.concurrent - (len(wanted) - 1))
        call_s = call_ms / 1000 + SETUP_S
        timeout = math.ceil(n / limit) * (call_s + 2) + 30
        run = SippRun(work / kind, scenario, server.sip_host, calls=n, limit=limit,
                      rate_per_s=max(0.1, round(limit / call_s, 1)), keys=keys, sets=sets, extra=extra,
                      timeout_s=timeout, service=kind)  # fmt: skip
        runs.append((kind, run))
    return runs


def _wait_all(name: str, runs: list[tuple[str, SippRun]], server: BenchServer) -> None:
    def tick(stats: SippStats) -> None:
        server.check_alive()
        line = ", ".join(f"{kind} {r.stats().successful + r.stats().failed}/{r.calls}" for kind, r in runs)
        progress("interruption", f"[{name}] calls done: {line}; {stats.failed} failed")

    for kind, run in runs:
        rc = run.wait(tick, every_s=3.0)
        if rc != 0:
            progress("interruption", f"[{name}] {kind}: SIPp exited {rc}{run.report()}")
            for rec in server.log_records("hanging up")[-5:]:
                progress("interruption", f"[{name}]   gateway hung up {rec.get('call_id')}: {rec.get('reason')}")


def run_variant(name: str, plan: Plan, tmp: Path, greeting: figs.Greeting) -> VariantResult:
    media, dropped = media_overrides(VARIANTS[name])
    res = VariantResult(name, media, dropped)
    work = tmp / name
    work.mkdir()
    entry: dict[str, Any] = {"agent": "echo", "greeting": plan.greeting, "interruptible": True}
    if plan.barge_in_min_ms:
        entry["barge_in_min_ms"] = plan.barge_in_min_ms
    server = BenchServer(work, plan.concurrent, entry, media)
    capture: Capture | None = None
    try:
        server.start()
        progress("interruption", f"[{name}] server up on {server.sip_host}: {describe(name, media)}"
                                 + (f"; not in this MediaConfig: {dropped}" if dropped else ""))  # fmt: skip
        capture = Capture(work / "capture.pcap", server.capture_filter()).start()
        runs = _kind_runs(plan, server, work, greeting.seconds)
        if plan.parallel:
            for _, run in runs:
                run.start()
            _wait_all(name, runs, server)
        else:
            for kind_run in runs:
                kind_run[1].start()
                _wait_all(name, [kind_run], server)
        for kind, run in runs:
            stats = run.stats()
            res.runs.append(KindRun(kind, run.calls, run.returncode, stats.failed, run.response_times_ms()))
    except (BenchError, CaptureError) as exc:
        res.error = str(exc)
        progress("interruption", f"[{name}] FAILED: {exc}")
    finally:
        if capture is not None:
            capture.stop()
            res.capture_dropped = capture.dropped
        res.server_rc = server.stop()
        if res.server_rc != 0:
            progress("interruption", f"[{name}] talkover serve exited {res.server_rc}:\n{server.log_tail()}")
    if capture is not None and not res.error:
        try:
            res.calls = _figures(work / "capture.pcap", server, greeting)
        except CaptureError as exc:
            res.error = f"reading the capture: {exc}"
    return res


def _figures(pcap: Path, server: BenchServer, greeting: figs.Greeting) -> list[figs.CallFigures]:
    notes, ended = server.turn_notes(), server.ended_calls()
    start = {"barge": manifest_clip(BARGE_CLIP)["speech_start_s"],
             "backchannel": manifest_clip(BACKCHANNEL_CLIP)["speech_start_s"]}  # fmt: skip
    out = []
    for call in read_calls(pcap):
        kind = call.called
        out.append(figs.analyse(call, kind, greeting, float(start.get(kind, 0.5)), notes.get(call.call_id),
                                ended.get(call.call_id)))  # fmt: skip
    return out


# -- the command ----------------------------------------------------------------------------------------


def run(plan: Plan, *, plot_path: Path | None = DEFAULT_PLOT, results: list[VariantResult] | None = None) -> int:
    """Measure every variant, print the table, plot. 0 = every SIPp run and server exited 0;
    1 = something failed; 2 = bad arguments or missing tools."""
    problem = _check(plan)
    if problem:
        print(f"talkover: {problem}", file=sys.stderr)
        return 2
    try:
        pcm = load_prompt(plan.greeting)
    except (ValueError, OSError, EOFError, wave.Error) as exc:
        print(f"talkover: --greeting {plan.greeting}: {exc}", file=sys.stderr)
        return 2
    if pcm is None:
        print("talkover: bench interruption needs a greeting", file=sys.stderr)
        return 2
    greeting = figs.greeting_shape(pcm)
    got: list[VariantResult] = []
    t0 = time.monotonic()
    load_avg = [os.getloadavg()[0]]
    with work_dir(plan.workdir, "talkover-bench-interruption-") as tmp:
        for name in plan.variants:
            progress("interruption", f"[{name}] starting ({os.cpu_count()} CPUs)")
            got.append(run_variant(name, plan, Path(tmp), greeting))
    load_avg.append(os.getloadavg()[0])
    if results is not None:
        results.extend(got)
    print(report.table(got, plan, [describe(r.name, r.media) for r in got], load_avg), flush=True)
    if plot_path is not None:
        progress("interruption", report.plot(got, plot_path))
    progress("interruption", f"done in {time.monotonic() - t0:.0f} s")
    failed = [r for r in got if not r.ok]
    for r in failed:
        why = r.error or "; ".join(f"{k.kind}: SIPp {k.sipp_rc}" for k in r.runs if k.sipp_rc != 0) or f"server {r.server_rc}"
        progress("interruption", f"[{r.name}] failed: {why}")
    return 1 if failed else 0


def _check(plan: Plan) -> str:
    from shutil import which

    unknown = [v for v in plan.variants if v not in VARIANTS]
    if unknown or not plan.variants:
        return f"--variants must be chosen from {', '.join(VARIANTS)} (got {', '.join(plan.variants) or 'none'})"
    counts = (plan.barge, plan.backchannel, plan.silent, plan.echo, plan.hold)
    if any(n < 0 for n in counts) or not any(counts):
        return "call counts must be >= 0 and at least one positive"
    if not 1 <= plan.concurrent <= 64:
        return "--concurrent must be 1-64"
    if plan.barge_ms < 200:
        return "--barge-ms must be at least 200 (the greeting must have started)"
    if plan.greeting not in ("long", "chime") and not Path(plan.greeting).is_file():
        return f"--greeting {plan.greeting!r}: 'long', 'chime' or a 16 kHz mono WAV file"
    for tool in ("sipp", "tcpdump"):
        if which(tool) is None:
            return f"bench interruption needs {tool} on PATH (deploy/install.sh --test)"
    if os.geteuid() != 0:
        return "bench interruption captures with tcpdump on loopback: run it as root"
    return keep_dir_problem(plan.workdir)


def from_args(args: Any) -> int:
    plan = Plan.quick() if args.quick else Plan()
    for name in ("barge", "backchannel", "silent", "echo", "hold", "concurrent", "barge_ms", "noise_dbfs",
                 "barge_in_min_ms", "greeting", "workdir"):  # fmt: skip
        value = getattr(args, name, None)
        if value is not None:
            setattr(plan, name, value)
    if args.variants:
        plan.variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    return run(plan)


def add_arguments(p: Any) -> None:
    """`talkover bench interruption`'s options."""
    p.add_argument("--variants", help=f"media variants, comma-separated ({', '.join(VARIANTS)}; default: default,energy)")
    p.add_argument("--barge", type=int, help="barge-in calls per variant (default 60)")
    p.add_argument("--backchannel", type=int, help="'mm-hm' calls (default 20)")
    p.add_argument("--silent", type=int, help="calls with a silent, noisy caller (default 20)")
    p.add_argument("--echo", type=int, help="calls whose caller echoes the agent back (default 12)")
    p.add_argument("--hold", type=int, help="hold / resume calls (default 4)")
    p.add_argument("--concurrent", type=int, help="calls at once (default 4: one worker)")
    p.add_argument("--barge-ms", type=int, help="ACK → caller stream start (default 1500)")
    p.add_argument("--noise-dbfs", type=float, help="the silent caller's line noise (default -55)")
    p.add_argument("--barge-in-min-ms", type=int, help="dialplan barge_in_min_ms (default: the dialplan's)")
    p.add_argument("--greeting", help="'long' (8 s melody, default) or a 16 kHz WAV")
    p.add_argument("--workdir", help="keep the captures, SIPp and server logs here (a new or empty dir)")
    p.add_argument("--quick", action="store_true", help="a few calls, all kinds at once, for tests")
