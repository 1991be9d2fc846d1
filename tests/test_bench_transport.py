"""`talkover bench transport` in its quick mode, against a real engine process: every run
reports, and the socket's figures stay inside loose bounds."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway import cli
from gateway.bench import transport
from gateway.bench.transport import Result

pytestmark = pytest.mark.timeout(30)

SOCKET = ("engine-silent", "engine-echo", "sock-raw")
ROUND_TRIPS = ("engine-echo", "sock-raw", "shm-busy", "shm-sleep")


@pytest.fixture(scope="module")
def results() -> list[Result]:
    return transport.measure(2000, quick=True)


def paced(results: list[Result], names: tuple[str, ...]) -> list[Result]:
    rows = [r for r in results if r.mode == "paced" and r.transport in names]
    assert rows
    return rows


def test_every_planned_run_reports(results: list[Result]) -> None:
    fast_s = max(transport.QUICK_S_VALUES)
    want = {(t, "paced", s) for t in transport.TRANSPORTS for s in transport.QUICK_S_VALUES}
    want |= {(t, "fast", fast_s) for t in transport.FAST_TRANSPORTS}
    assert {(r.transport, r.mode, r.sessions) for r in results} == want
    assert all(r.frames > 0 and r.wall_s > 0 for r in results)


def test_paced_socket_sends_are_cheap_and_never_refused(results: list[Result]) -> None:
    for r in paced(results, SOCKET):
        assert r.dropped == 0, r
        # At S=1 every frame pays the clock thread's cold wake-up (tens of µs on a VM).
        assert r.send_cpu_us < (1000 if r.sessions == 1 else 200), r


def test_every_frame_is_answered_and_socket_round_trips_are_short(results: list[Result]) -> None:
    for r in paced(results, ROUND_TRIPS):
        assert r.replies == r.frames, r
        assert r.rtt_p50_ms is not None and r.rtt_p99_ms is not None and 0 < r.rtt_p50_ms <= r.rtt_p99_ms, r
        if r.transport in SOCKET:
            assert r.rtt_p99_ms < 50, r


def test_engine_and_receiver_cpu_are_measured(results: list[Result]) -> None:
    for r in paced(results, SOCKET):
        assert 0 < r.peer_cpu_us < 5000, r
    for r in paced(results, ROUND_TRIPS):
        assert r.recv_cpu_us is not None and r.recv_cpu_us > 0, r
    for r in paced(results, ("shm-busy",)):
        assert r.peer_cpu_us > r.send_cpu_us, r  # the poller spins between frames


def test_report_prints_the_table_and_a_conclusion_and_plots(
    results: list[Result], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    png = tmp_path / "bench.png"
    assert transport.report(results, png) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in transport.TRANSPORTS)
    conclusion = [line for line in out.splitlines() if line.startswith("Conclusion:")]
    assert len(conclusion) == 1
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        assert not png.exists()
    else:
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_routes_bench_transport_to_run(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[int] = []
    monkeypatch.setattr(transport, "run", lambda frames: seen.append(frames) or 0)
    assert cli.main(["bench", "transport", "--frames", "123"]) == 0
    assert seen == [123]
