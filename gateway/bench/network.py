"""`talkover bench network`: real SIPp calls through the impairment relay
(gateway/bench/impair_relay.py), and what the gateway's pjmedia jitter buffer made of them.

For each jitter-buffer setting (a `[sip.jitter]` table) a fresh `talkover serve` answers every
number with the echo agent; for each network profile a relay is put in front of it and SIPp
(sipp_scenarios/uac_call.xml, looping G.711 speech from sipp_scenarios/audio/) places
`--calls` calls, `--concurrent` at a time, each talking for `--talk-s`. The relay impairs
caller→gateway RTP and records every packet's network delay; the worker's "call ended" log
line gives pjmedia's jitter-buffer figures of each call. The table (gateway/bench/
network_report.py says what each column is) goes to stdout, progress to stderr, a PNG of the
delay CDFs to artifacts/bench_network.png.

    talkover bench network                      # every profile, settings pjmedia/default/deep
    talkover bench network --quick              # clean and jitter40-loss3, 2 short calls each
    talkover bench network --profiles burst5 --settings default --trace my.trace
"""

from __future__ import annotations

import math
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gateway.bench import network_report as report
from gateway.bench.impair import EXAMPLE_TRACE, PROFILES, Profile, read_trace, trace_profile
from gateway.bench.impair_relay import ImpairRelay
from gateway.bench.server import BenchError, wait_until
from gateway.bench.sipp_driver import SPEECH, BenchServer, SippRun, keep_dir_problem, progress, work_dir
from gateway.config import JitterConfig

REPO = Path(__file__).resolve().parents[2]
DEFAULT_PLOT = REPO / "artifacts" / "bench_network.png"
SETTINGS: dict[str, dict[str, Any]] = {
    "default": {},  # gateway/config.py's JitterConfig as it is
    "pjmedia": {"init_ms": -1, "min_pre_ms": -1, "max_pre_ms": -1, "max_ms": -1, "discard_algo": 2},
    "low": {"init_ms": 40, "min_pre_ms": 20, "max_pre_ms": 100, "max_ms": 300},  # starts at 40, shrinks to 20
    "deep": {"init_ms": 100, "min_pre_ms": 60, "max_pre_ms": 240, "max_ms": 500},
    "init40": {"init_ms": 40, "min_pre_ms": -1, "max_pre_ms": -1, "max_ms": -1},  # only a start prefetch
    "low-static": {"init_ms": 40, "min_pre_ms": 20, "max_pre_ms": 100, "max_ms": 300, "discard_algo": 1},
}
ENDED_WAIT_S = 10.0  # SIPp's BYE answered → the worker's "call ended" line in the log
BENCH = "network"


@dataclass
class Plan:
    calls: int = 4  # per profile
    concurrent: int = 4  # one worker takes 4 calls
    talk_s: float = 20.0
    profiles: list[str] = field(default_factory=lambda: [*PROFILES, "trace"])
    settings: list[str] = field(default_factory=lambda: ["pjmedia", "default", "deep"])
    trace: str = str(EXAMPLE_TRACE)
    workdir: str = ""

    @classmethod
    def quick(cls) -> "Plan":
        return cls(calls=2, concurrent=2, talk_s=10.0, profiles=["clean", "jitter40-loss3"], settings=["default"])

    def profile(self, name: str) -> Profile:
        return trace_profile(Path(self.trace)) if name == "trace" else PROFILES[name]


class NetworkServer(BenchServer):
    """The bench server with a `[sip.jitter]` table."""

    def __init__(self, work: Path, calls: int, jitter: dict[str, Any]) -> None:
        self.jitter = dict(jitter)
        super().__init__(work, calls, {"agent": "echo", "greeting": "chime", "interruptible": False})

    def write_files(self, tables: dict[str, dict[str, Any]], entry: dict[str, Any]) -> None:
        super().write_files({**tables, "sip.jitter": self.jitter} if self.jitter else tables, entry)


def run_profile(plan: Plan, server: NetworkServer, setting: str, name: str, work: Path) -> report.ProfileRun:
    res = report.ProfileRun(setting, name, calls=plan.calls)
    profile = plan.profile(name)
    log_start = server.log_path.stat().st_size if server.log_path.exists() else 0  # a byte offset
    with ImpairRelay(("127.0.0.1", server.sip_port), profile) as relay:
        rounds = math.ceil(plan.calls / plan.concurrent)
        sipp = SippRun(work / f"{setting}-{name}", "uac_call.xml", f"127.0.0.1:{relay.sip_port}",
                       calls=plan.calls, limit=plan.concurrent, rate_per_s=plan.concurrent,
                       keys={"rtp_file": SPEECH}, sets={"talk_ms": int(plan.talk_s * 1000)},
                       timeout_s=rounds * (plan.talk_s + 5) + 20, service=name, traces=True).start()  # fmt: skip

        def tick(stats: Any) -> None:
            server.check_alive()
            paths = relay.snapshot()
            packets = sum(len(p.records) for p in paths)
            progress(BENCH, f"[{setting}/{name}] calls {stats.successful + stats.failed}/{plan.calls} done, "
                            f"{stats.current} up; {packets} caller packets relayed")  # fmt: skip

        rc = sipp.wait(tick, every_s=5.0)
    stats = sipp.stats()
    res.failed = plan.calls - stats.successful if rc == 0 else max(stats.failed, plan.calls - stats.successful)
    if rc != 0:
        res.error = f"SIPp exited {rc}{sipp.report(600)}"
    paths = relay.snapshot()
    ids = {p.call_id for p in paths}
    try:
        wait_until(lambda: ids <= set(server.ended_calls(log_start)), ENDED_WAIT_S, "the calls' 'call ended' lines")
    except BenchError as exc:
        res.error = res.error or str(exc)
    ended = server.ended_calls(log_start)
    for p in paths:
        res.relay_packets += len(p.records)
        res.relay_lost += p.lost
        res.delays_ms += [r.delay_ms for r in p.records if not math.isnan(r.forwarded)]
        jb = ended.get(p.call_id, {}).get("jitter") or {}
        if jb:
            res.jb.append(jb)
    return res


def run_setting(plan: Plan, setting: str, tmp: Path) -> list[report.ProfileRun]:
    work = tmp / setting
    work.mkdir()
    server = NetworkServer(work, plan.concurrent, SETTINGS[setting])
    out: list[report.ProfileRun] = []
    try:
        server.start()
        progress(BENCH, f"[{setting}] server up on {server.sip_host}; [sip.jitter] {SETTINGS[setting] or 'defaults'}")
        for name in plan.profiles:
            t0 = time.monotonic()
            got = run_profile(plan, server, setting, name, work)
            out.append(got)
            progress(BENCH, f"[{setting}/{name}] {time.monotonic() - t0:.0f} s: jb mean {got.jb_mean_ms:.0f} ms, "
                            f"late {got.late_pct:.1f} %, PLC {got.plc_pct:.1f} %, oracle wait {got.oracle_wait_ms:.0f} ms")  # fmt: skip
    except BenchError as exc:
        progress(BENCH, f"[{setting}] FAILED: {exc}")
        out.append(report.ProfileRun(setting, "-", error=str(exc)))
    finally:
        rc = server.stop()
        if rc != 0:
            progress(BENCH, f"[{setting}] talkover serve exited {rc}:\n{server.log_tail()}")
            out.append(report.ProfileRun(setting, "-", error=f"talkover serve exited {rc}"))
    return out


def run(plan: Plan, *, plot_path: Path | None = DEFAULT_PLOT, results: list[report.ProfileRun] | None = None) -> int:
    """Every setting × profile; the table on stdout, the plot. 0 = all calls went through,
    1 = something failed, 2 = bad arguments or missing tools."""
    problem = _check(plan)
    if problem:
        print(f"talkover: {problem}", file=sys.stderr)
        return 2
    t0 = time.monotonic()
    got: list[report.ProfileRun] = []
    with work_dir(plan.workdir, "talkover-bench-network-") as tmp:
        for setting in plan.settings:
            got += run_setting(plan, setting, Path(tmp))
    if results is not None:
        results.extend(got)
    print(report.table(got, {s: _resolved(SETTINGS[s]) for s in plan.settings}), flush=True)
    if plot_path is not None:
        progress(BENCH, report.plot([r for r in got if r.profile != "-"], plot_path))
    progress(BENCH, f"done in {time.monotonic() - t0:.0f} s")
    return 1 if any(r.error or r.failed for r in got) else 0


def _resolved(values: dict[str, Any]) -> dict[str, Any]:
    cfg = JitterConfig(**values)
    return {k: getattr(cfg, k) for k in JitterConfig.__dataclass_fields__}


def _check(plan: Plan) -> str:
    unknown = [p for p in plan.profiles if p != "trace" and p not in PROFILES]
    if unknown or not plan.profiles:
        return f"--profiles must be chosen from {', '.join([*PROFILES, 'trace'])} (got {', '.join(unknown) or 'none'})"
    bad = [s for s in plan.settings if s not in SETTINGS]
    if bad or not plan.settings:
        return f"--settings must be chosen from {', '.join(SETTINGS)}"
    for s in plan.settings:
        problem = JitterConfig(**SETTINGS[s]).validate()
        if problem:
            return f"setting {s}: {problem[0]} {problem[1]}"
    if "trace" in plan.profiles:
        try:
            read_trace(Path(plan.trace))
        except (OSError, ValueError) as exc:
            return f"--trace: {exc}"
    if not (1 <= plan.concurrent <= 4 and plan.calls >= 1 and plan.talk_s >= 2):
        return "--concurrent must be 1-4 (one worker), --calls >= 1, --talk-s >= 2"
    if shutil.which("sipp") is None:
        return "bench network needs sipp on PATH (deploy/install.sh --test)"
    return keep_dir_problem(plan.workdir)


def from_args(args: Any) -> int:
    plan = Plan.quick() if args.quick else Plan()
    for name in ("calls", "concurrent", "talk_s", "trace", "workdir"):
        value = getattr(args, name, None)
        if value is not None:
            setattr(plan, name, value)
    if args.profiles:
        plan.profiles = [p.strip() for p in args.profiles.split(",") if p.strip()]
    if args.settings:
        plan.settings = [s.strip() for s in args.settings.split(",") if s.strip()]
    return run(plan)


def add_arguments(p: Any) -> None:
    """`talkover bench network`'s options."""
    p.add_argument("--profiles", help=f"comma-separated: {', '.join(PROFILES)}, trace (default: all)")
    p.add_argument("--settings", help=f"jitter-buffer settings: {', '.join(SETTINGS)} (default: pjmedia,default,deep)")
    p.add_argument("--trace", help=f"the trace file of the 'trace' profile (default {EXAMPLE_TRACE.name})")
    p.add_argument("--calls", type=int, help="calls per profile (default 4)")
    p.add_argument("--concurrent", type=int, help="calls at once, 1-4 (default 4)")
    p.add_argument("--talk-s", type=float, help="seconds each call streams speech (default 20)")
    p.add_argument("--workdir", help="keep the SIPp and server logs here (a new or empty dir)")
    p.add_argument("--quick", action="store_true", help="clean and jitter40-loss3, 2 short calls, for tests")
