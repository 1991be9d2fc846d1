"""A Kamailio front door of its own, for gateway workers on other hosts.

`talkover serve` starts Kamailio itself when its pool has more than one worker. This
command is for everything else: a front-door host in front of several gateway hosts
(deploy/systemd/talkover-kamailio.service), the Kubernetes Kamailio pod, or looking at and
draining a running front door by hand.

    python -m gateway.supervisor.kamailio_cli render --config talkover.toml --out DIR [--worker HOST:PORT ...]
    python -m gateway.supervisor.kamailio_cli check  --config talkover.toml [--worker HOST:PORT ...]
    python -m gateway.supervisor.kamailio_cli run    --config talkover.toml --run-dir DIR [--worker HOST:PORT ...]
    python -m gateway.supervisor.kamailio_cli status --run-dir DIR
    python -m gateway.supervisor.kamailio_cli drain|restore --run-dir DIR sip:HOST:PORT

Workers come from `[kamailio] workers` plus any --worker; Kamailio listens on [sip] host/port.
"""

from __future__ import annotations

import argparse
import signal
import sys
import tempfile
from pathlib import Path

from engine.logs import configure_logging
from engine.signals import SignalLatch
from gateway.config import Config, load_config
from gateway.supervisor.kamailio import FrontDoor, Kamailio, WorkerAddress
from gateway.supervisor.kamailio_rpc import KamailioError, KamailioRpc
from gateway.tomlfile import ConfigError


def _front_door(args: argparse.Namespace) -> FrontDoor:
    cfg = load_config(args.config) if args.config else Config()
    extra = [WorkerAddress.parse(w, name=f"cli{i}") for i, w in enumerate(args.worker or [])]
    return FrontDoor.from_config(cfg, extra, calls_per_worker=args.calls_per_worker)


def _render(args: argparse.Namespace) -> int:
    kam = Kamailio(_front_door(args), Path(args.out))
    print(kam.write())
    return 0


def _check(args: argparse.Namespace) -> int:
    with tempfile.TemporaryDirectory(prefix="talkover-kamailio-") as tmp:
        Kamailio(_front_door(args), Path(tmp)).check()
    print("ok: kamailio -c accepts the rendered config")
    return 0


def _run(args: argparse.Namespace) -> int:
    door = _front_door(args)
    configure_logging(door.log_level, "auto", process="kamailio")
    stop = SignalLatch().install(signal.SIGTERM, signal.SIGINT)
    kam = Kamailio(door, Path(args.run_dir), log_to_file=False)  # its log joins ours on stderr
    kam.start()
    try:
        while not stop.wait(0.5):
            if not kam.alive:
                print(f"kamailio exited:\n{kam.log_tail()}", file=sys.stderr)
                return 1
    finally:
        kam.stop()
    return 0


def _rpc(args: argparse.Namespace) -> KamailioRpc:
    return KamailioRpc(str(Path(args.run_dir).absolute() / "ctl.sock"), kamcmd=args.kamcmd)


def _status(args: argparse.Namespace) -> int:
    print(f"{'worker':32} {'state':9} {'probed':6} {'calls':>5}")
    for d in _rpc(args).destinations():
        print(f"{d.uri:32} {d.state:9} {'yes' if d.probing else 'no':6} {d.load:>5}")
    return 0


def _drain(args: argparse.Namespace) -> int:
    _rpc(args).drain(args.uri)
    print(f"{args.uri}: drained (no new calls; live calls go on)")
    return 0


def _restore(args: argparse.Namespace) -> int:
    _rpc(args).restore(args.uri, verified=True)
    print(f"{args.uri}: back in the pool at its next answered OPTIONS")
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m gateway.supervisor.kamailio_cli", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    for name, fn in (("render", _render), ("check", _check), ("run", _run)):
        p = sub.add_parser(name)
        p.set_defaults(fn=fn)
        p.add_argument("--config", help="talkover TOML ([sip] host/port, [kamailio], [log])")
        p.add_argument("--worker", action="append", help="a gateway worker's SIP address HOST:PORT (repeatable)")
        p.add_argument("--calls-per-worker", type=int, default=4, help="most calls Kamailio sends one worker")
        if name == "render":
            p.add_argument("--out", required=True, help="directory for kamailio.cfg and dispatcher.list")
        if name == "run":
            p.add_argument("--run-dir", required=True, help="config, dispatcher list, RPC socket and log")
    for name, fn in (("status", _status), ("drain", _drain), ("restore", _restore)):
        p = sub.add_parser(name)
        p.set_defaults(fn=fn)
        p.add_argument("--run-dir", required=True, help="the run directory of a running front door")
        p.add_argument("--kamcmd", default="kamcmd")
        if name != "status":
            p.add_argument("uri", help="the worker, e.g. sip:10.0.0.2:5060")
    args = ap.parse_args(argv)
    try:
        return int(args.fn(args))
    except (ConfigError, KamailioError) as exc:
        print(f"talkover-kamailio: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
