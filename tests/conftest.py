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


@pytest.fixture
def gateway_factory(tmp_path: Path) -> Iterator[Callable[..., Gateway]]:
    """Start `talkover serve` with overrides: gateway_factory(sip={...}, entries=[...])."""
    started: list[Gateway] = []

    def start(**overrides: Any) -> Gateway:
        gw = Gateway(tmp_path / f"gw{len(started)}", **overrides)
        gw.workdir.mkdir()
        started.append(gw)
        return gw.start()

    yield start
    for gw in started:
        code = gw.stop()
        assert code == 0, f"talkover serve exited {code}:\n{gw.log_text()[-3000:]}"


@pytest.fixture
def gateway(gateway_factory: Callable[..., Gateway]) -> Gateway:
    return gateway_factory()
