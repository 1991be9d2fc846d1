"""The `talkover` command."""

from __future__ import annotations

import argparse
import importlib
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


# `talkover bench NAME`: the module that measures it and the help line. Each module has
# add_arguments(parser) and from_args(args) -> exit code; only the bench asked for is imported.
BENCHES: dict[str, tuple[str, str]] = {
    "transport": ("gateway.bench.transport", "per-frame cost of the gateway-engine transport"),
    "aec": ("gateway.bench.aec", "echo cancellation (ERLE) and barge-in through the media chain"),
    "calls": ("gateway.bench.calls", "gateway CPU and media-clock health under N concurrent SIPp calls"),
    "engine": ("gateway.bench.engine", "batched model step vs one by one: tick time, real-time streams, FLOPs"),
    "load": ("gateway.bench.load", "concurrent calls held and calls per second one worker sustains (SIPp)"),
    "interruption": ("gateway.bench.interruption",
                     "barge-in latency, false barge-ins, backchannels, hold (SIPp + tcpdump)"),
    "pool": ("gateway.bench.pool", "concurrent calls and calls per second the machine holds vs SIP workers"),
    "webrtc": ("gateway.webrtc.bench", "concurrent WebRTC calls one worker process holds"),
    "intents": ("gateway.bench.intents", "the receptionist's intent accuracy on held-out caller voices"),
    "network": ("gateway.bench.network", "jitter buffer vs delay, jitter, loss and reordering (SIPp through a relay)"),
    "model": ("gateway.bench.model", "codec round trip vs uncoded, Opus 6k, AMR-NB 4.75k (WER, STOI, bitrate, RTF); unit LM speaking held-out sentences vs piper"),
}


def _add_benches(bench_sub: argparse._SubParsersAction, argv: list[str]) -> None:  # type: ignore[type-arg]
    wanted = argv[1] if len(argv) > 1 and argv[0] == "bench" else None
    for name, (module, help_line) in BENCHES.items():
        parser = bench_sub.add_parser(name, help=help_line)
        if name == wanted:
            bench = importlib.import_module(module)
            bench.add_arguments(parser)
            parser.set_defaults(func=bench.from_args)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
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
    train = sub.add_parser("train", help="train the engine's model (codec) on a synthesized corpus")
    __import__("engine.train.cli", fromlist=["add_parser"]).add_parser(train.add_subparsers(dest="train", required=True))
    bench = sub.add_parser("bench", help="benchmarks that print figures")
    bench_sub = bench.add_subparsers(dest="bench", required=True)
    _add_benches(bench_sub, argv)
    args = ap.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
