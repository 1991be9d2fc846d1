"""Runs SIPp (Debian's sip-tester, /usr/bin/sipp) scenarios from sipp_scenarios/ against a gateway."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

from tests.support.gateway import REPO, Gateway, free_port

SCENARIOS = REPO / "sipp_scenarios"


@dataclass
class SippResult:
    returncode: int
    output: str
    workdir: Path


def run_sipp(
    gw: Gateway,
    scenario: str,
    *extra: str,
    service: str = "1000",
    calls: int = 1,
    limit: int = 1,
    rate: float = 1.0,
    timeout: float = 60,
) -> SippResult:
    work = gw.workdir / f"sipp-{Path(scenario).stem}-{free_port()}"
    work.mkdir()
    argv = [
        "sipp", "-sf", str(SCENARIOS / scenario), "-i", "127.0.0.1", "-p", str(free_port()),
        "-mi", "127.0.0.1", "-mp", str(free_port()), "-s", service, "-m", str(calls), "-l", str(limit),
        "-r", str(rate), "-timeout", f"{int(timeout)}s", "-timeout_error", "-nostdin",
        "-trace_err", "-trace_msg", *extra, gw.uri_host,
    ]
    try:
        proc = subprocess.run(argv, cwd=work, capture_output=True, text=True, timeout=timeout + 15)
        code, out = proc.returncode, proc.stdout[-4000:] + proc.stderr[-4000:]
    except subprocess.TimeoutExpired as exc:
        code, out = -1, f"sipp did not finish: {exc}"
    for log in sorted(work.glob("*_errors.log")):
        out += f"\n--- {log.name}\n" + log.read_text(errors="replace")[-4000:]
    return SippResult(code, out, work)
