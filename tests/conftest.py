from __future__ import annotations

import shutil
import sys
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support.gateway import Gateway  # noqa: E402

DATA = ROOT / "tests" / "data"
SCENARIOS = ROOT / "sipp_scenarios"
ARTIFACTS = ROOT / "artifacts"


def need(tool: str) -> None:
    if shutil.which(tool) is None:
        pytest.fail(f"{tool} is not installed: run deploy/install.sh --test")


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    setattr(item, f"rep_{report.when}", report)  # fixtures read it at teardown
    return report


NOTABLE = ("warning", "error", "critical")
NOTABLE_EVENTS = ("incoming call", "call ended", "engine connected", "engine connection lost", "child started",
                  "child died", "engine ready", "worker connected", "session opened", "call rejected", "hanging up")


def _notable_log(gw: Gateway, lines: int = 60) -> str:
    """What a failed test's gateway said that explains most failures: warnings, errors, call and
    engine-link life cycle (the whole log stays in the test's tmp dir)."""
    keep = [
        line for line in gw.log_text().splitlines()
        if any(f'"level": "{lv}"' in line for lv in NOTABLE) or any(f'"event": "{ev}' in line for ev in NOTABLE_EVENTS)
    ]
    return "\n".join(line[:400] for line in keep[-lines:])


@pytest.fixture
def gateway_factory(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Callable[..., Gateway]]:
    """Start `talkover serve` with overrides: gateway_factory(sip={...}, entries=[...])."""
    started: list[Gateway] = []

    def start(**overrides: Any) -> Gateway:
        gw = Gateway(tmp_path / f"gw{len(started)}", **overrides)
        gw.workdir.mkdir()
        started.append(gw)
        return gw.start()

    yield start
    call_report = getattr(request.node, "rep_call", None)
    if call_report is not None and call_report.failed:
        for gw in started:
            print(f"--- {gw.workdir.name}: notable lines of {gw.log_path} ---\n{_notable_log(gw)}")
    for gw in started:
        code = gw.stop()
        assert code == 0, f"talkover serve exited {code}:\n{gw.log_text()[-3000:]}"


@pytest.fixture
def gateway(gateway_factory: Callable[..., Gateway]) -> Gateway:
    return gateway_factory()
