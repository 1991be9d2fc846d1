"""The `talkover` command."""

from __future__ import annotations

import argparse
import os
import shutil
import sys

from engine.logs import configure_logging
from gateway.config import load_config
from gateway.dialplan import load_dialplan
from gateway.tomlfile import ConfigError


def _serve(args: argparse.Namespace) -> int:
    try:
        cfg = load_config(args.config)
        load_dialplan(cfg.dialplan)  # fail at start, naming the line
    except ConfigError as exc:
        print(f"talkover: {exc}", file=sys.stderr)
        return 2
    configure_logging(cfg.log.level, cfg.log.format, process="supervisor")
    metrics_dir = cfg.runtime_dir() / "metrics"
    shutil.rmtree(metrics_dir, ignore_errors=True)
    metrics_dir.mkdir(parents=True)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)
    from gateway.supervisor import Supervisor  # imports prometheus_client: after the env var

    try:
        supervisor = Supervisor(cfg)
    except OSError as exc:
        print(f"talkover: cannot listen on http {cfg.http.host}:{cfg.http.port}: {exc.strerror}", file=sys.stderr)
        return 2
    return supervisor.run()


def _check(args: argparse.Namespace) -> int:
    try:
        cfg = load_config(args.config)
        plan = load_dialplan(args.dialplan or cfg.dialplan)
    except ConfigError as exc:
        print(f"talkover: {exc}", file=sys.stderr)
        return 2
    print(f"ok: {len(plan.entries)} dialplan entries ({plan.path})")
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="talkover", description="Voice agents on phone lines and WebRTC")
    sub = ap.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the gateway and the engine")
    serve.add_argument("--config", help="TOML config (default: built-in defaults)")
    serve.set_defaults(func=_serve)
    check = sub.add_parser("check", help="validate a config and its dialplan, then exit")
    check.add_argument("--config")
    check.add_argument("--dialplan")
    check.set_defaults(func=_check)
    data = sub.add_parser("data", help="offline data: the synthetic corpus")
    __import__("engine.data.synth", fromlist=["add_parser"]).add_parser(data.add_subparsers(dest="data", required=True))
    bench = sub.add_parser("bench", help="benchmarks that print figures")
    bench_sub = bench.add_subparsers(dest="bench", required=True)
    tr = bench_sub.add_parser("transport", help="per-frame cost of the gateway-engine transport")
    tr.add_argument("--frames", type=int, default=20000)
    tr.set_defaults(func=lambda a: __import__("gateway.bench.transport", fromlist=["run"]).run(a.frames))
    ae = bench_sub.add_parser("aec", help="echo cancellation (ERLE) and barge-in through the media chain")
    ae.add_argument("--short", action="store_true", help="a small corpus (seconds, for tests)")
    ae.set_defaults(func=lambda a: __import__("gateway.bench.aec", fromlist=["run"]).run(a))
    bc = bench_sub.add_parser("calls", help="gateway CPU and media-clock health under N concurrent SIPp calls")
    bc.add_argument("--calls", default="1,2,4", help="comma-separated numbers of concurrent calls, a fresh server each")
    bc.add_argument("--seconds", type=float, default=20.0, help="how long each call talks")
    bc.set_defaults(func=lambda a: __import__("gateway.bench.calls", fromlist=["from_args"]).from_args(a))
    __import__("gateway.bench.engine", fromlist=["add_parser"]).add_parser(bench_sub)  # talkover bench engine
    __import__("gateway.bench.load", fromlist=["add_parser"]).add_parser(bench_sub)  # talkover bench load
    __import__("gateway.bench.interruption", fromlist=["add_parser"]).add_parser(bench_sub)  # ... interruption
    __import__("gateway.bench.pool", fromlist=["add_parser"]).add_parser(bench_sub)  # talkover bench pool
    wr = bench_sub.add_parser("webrtc", help="concurrent WebRTC calls one worker process holds")
    wr.add_argument("--steps", default="1,2,4,8,12,16,24,32", help="call counts to measure, comma-separated")
    wr.add_argument("--seconds", type=float, default=6.0, help="measuring time per step")
    wr.set_defaults(func=lambda a: __import__("gateway.webrtc.bench", fromlist=["run"]).run(a.steps, a.seconds))
    args = ap.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
