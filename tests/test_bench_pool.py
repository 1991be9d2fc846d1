"""`talkover bench pool`: bad arguments refused, the step plan, the per-stage breakdown on
known numbers, and the quick mode against real servers (1 worker alone, 2 behind Kamailio;
SIPp, the echo agent, the full media chain) with figures inside loose bounds."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from gateway import cli
from gateway.bench import pool, pool_report, pool_step
from gateway.bench.pool_meter import Usage
from gateway.bench.pool_plan import PoolPlan, PoolResult, PoolRun, PoolStep
from gateway.bench.capture import G711
from gateway.bench.sipp_driver import AUDIO, SippRun, write_turns_ulaw
from tests.conftest import need


def test_bad_arguments_are_refused(capsys: pytest.CaptureFixture[str]) -> None:
    assert pool.run(PoolPlan(workers=[2, 1])) == 2
    assert pool.run(PoolPlan(workers=[0])) == 2
    assert pool.run(PoolPlan(hold_steps=[])) == 2
    assert pool.run(PoolPlan(rates=[1, -2])) == 2
    assert pool.run(PoolPlan(hold_s=1)) == 2
    err = capsys.readouterr().err
    assert "--workers" in err and "--hold-s" in err and "Traceback" not in err
    assert cli.main(["bench", "pool", "--workers", "1,x"]) == 2
    assert "comma-separated" in capsys.readouterr().err
    assert pool.run(PoolPlan(caller="shouting")) == 2
    assert "--caller" in capsys.readouterr().err
    assert cli.main(["bench", "pool", "--set", "media.vad_batch"]) == 2
    assert "TABLE.KEY=VALUE" in capsys.readouterr().err
    assert cli.main(["bench", "pool", "--set", "sip.max_calls=four"]) == 2
    assert "not TOML" in capsys.readouterr().err


def test_config_overrides_become_tables_of_the_servers_config() -> None:
    assert pool.config_overrides(["media.vad_batch=false", "sip.max_calls=4", "sip.jitter.init_ms=40"]) == {
        "media": {"vad_batch": False}, "sip": {"max_calls": 4}, "sip.jitter": {"init_ms": 40}}


def test_a_turn_taking_caller_speaks_then_leaves_a_quiet_pause(tmp_path: Path) -> None:
    data = np.frombuffer(write_turns_ulaw(tmp_path / "turns.ulaw", turn_s=3.0, gap_s=4.0).read_bytes(), np.uint8)
    pcm = G711[0][data].astype(np.float64)
    level = 10 * np.log10(np.mean(pcm.reshape(-1, 160) ** 2, axis=1) / 32768**2 + 1e-12)  # per 20 ms
    assert (AUDIO / "long_joe.ulaw").stat().st_size == 74080  # 9.26 s: three 3 s turns, the last 0.26 s left out
    assert data.size == 3 * 24000 + 3 * 32000  # every turn followed by 4 s of pause
    first_pause = level[150:350]
    assert np.all(first_pause < -60) and np.all(first_pause > -70)  # line noise, not digital silence
    assert np.mean(level[:150] > -40) > 0.5 and np.mean(level[350:500] > -40) > 0.5  # speech around it


def test_each_worker_count_starts_at_the_previous_best_and_stays_under_the_cap() -> None:
    assert pool._steps_from([4, 8, 12, 16, 24], 0, 4) == [4]
    assert pool._steps_from([4, 8, 12, 16, 24], 8, 16) == [8, 12, 16]
    assert pool._steps_from([4, 8, 12, 16, 24], 10, 32) == [8, 12, 16, 24]  # re-measures the last step it passed
    assert pool._steps_from([2, 6], 0, 1) == []


def test_breakdown_nests_the_chain_stages_and_subtracts_idle() -> None:
    idle = Usage(window_s=3, cpu={"workers": 4.0, "engine": 1.0, "kamailio": 1.0, "supervisor": 1.0})
    busy = Usage(window_s=50, cpu={"workers": 44.0, "engine": 11.0, "kamailio": 3.0, "supervisor": 1.0, "sipp": 5.0},
                 stage_pct={"inbound": 10.0, "aec": 4.0, "vad": 5.0, "outbound": 3.0, "aec_far": 2.0},
                 stage_us={"inbound": 400.0, "aec": 160.0, "vad": 200.0, "outbound": 120.0, "aec_far": 80.0})
    step = PoolStep(2, "hold", 10, sipp_rc=0, ok=10, ended=10, both_ways=10, usage=busy)
    run = PoolRun(2, idle=idle, hold=[step])
    parts = {name.strip(): (us, pct, counted) for name, us, pct, counted in pool_report.breakdown(run)}
    assert parts["media inbound"][:2] == (400.0, 1.0) and parts["aec"][1] == pytest.approx(0.4)
    assert parts["rest of the stage"][0] == pytest.approx(40.0)  # inbound minus aec and vad, µs
    assert parts["media chain, all stages"][1] == pytest.approx(1.3)  # inbound + outbound, per call
    assert parts[pool_report.NOT_STAGES][1] == pytest.approx((44 - 4) / 10 - 1.3)
    assert parts["engine"][1] == pytest.approx(1.0) and parts["kamailio"][1] == pytest.approx(0.2)
    total = sum(pct for _, pct, counted in parts.values() if counted)
    assert total == pytest.approx((44 + 11 + 3 + 1 - 7) / 10)  # talkover's processes, minus idle, per call
    assert not parts["SIPp (load generator, same machine)"][2]


@pytest.mark.timeout(150)
def test_quick_pool(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    need("sipp")
    need("kamailio")
    plan = PoolPlan.quick_plan()
    plan.settings = {"sip": {"pjsip_log_level": 1}}  # a --set override reaches the servers' config
    png = tmp_path / "pool.png"
    results: list[PoolResult] = []
    code = pool.run(plan, plot_path=png, results=results)
    out = capsys.readouterr()
    assert code == 0, out.err[-4000:]
    (res,) = results
    assert [r.workers for r in res.runs] == [1, 2], out.err[-3000:]
    assert "sip.pjsip_log_level = 1" in out.out
    one, two = res.runs
    for r in res.runs:
        assert r.server_rc == 0 and not r.error
        assert len(r.first_call_ms) >= r.workers  # every worker got its warm-up call
        assert 0 < r.idle.pss_mb < 4000 and r.idle.cpu["workers"] >= 0
    assert [s.value for s in one.hold] == [2]  # 6 is above one worker's cap of 4
    assert [s.value for s in two.hold][:1] == [2]  # starts at what 1 worker held (6 only if 2 passed)
    for r in res.runs:
        for s in r.hold + r.rate:
            n = s.value if s.phase == "hold" else s.placed
            assert s.sipp_rc == 0 and (s.ok, s.failed) == (n, 0), out.err[-3000:]
            assert s.ended == s.ok and s.both_ways == s.ok, out.err[-3000:]  # audio both ways on every call
            assert s.usage.window_s > 0 and s.usage.cpu["workers"] > 0
            assert max(s.response_ms) < 5000
    held6 = two.hold[-1]
    assert 0.5 * two.idle.pss_mb < held6.usage.pss_mb < 2 * two.idle.pss_mb  # call ports exist from the start
    assert held6.usage.cpu["kamailio"] >= 0
    per_call = pool_report._per_call(held6, two.idle, "server")
    assert 0 < per_call < 100  # a busy server, not a spinning one
    assert {"inbound", "aec", "vad"} <= set(held6.usage.stage_pct)  # the chain reported its stages
    assert "held 5 s" in out.out and "vs 1 worker" in out.out and "(c) CPU per call by part" in out.out
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        assert not png.exists()
    else:
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_underrun_budget_is_per_call_minute() -> None:
    step = PoolStep(1, "hold", 4, sipp_rc=0, ok=4, ended=4, both_ways=4, underruns=3, call_minutes=4.0)
    assert not step.passed  # the criterion: none at all
    step.underrun_budget = 1.0
    assert step.passed  # 3 <= 1 per call-minute x 4 call-minutes
    step.underruns = 5
    assert not step.passed


def _sipp_files(work: Path, stat: str | None, rtt: str | None) -> SippRun:
    """A finished SippRun's result files as SIPp leaves them (None: a directory where the file
    should be, which no read gets through)."""
    sipp = SippRun(work, "uac_call.xml", "127.0.0.1:5060", calls=2, limit=2, rate_per_s=1.0)
    for path, text in ((sipp.stat_path, stat), (work / "uac_call_1_rtt.csv", rtt)):
        if text is None:
            path.mkdir()
        else:
            path.write_text(text)
    return sipp


STAT_CSV = "StartTime;TotalCallCreated;CurrentCall;SuccessfulCall(C);FailedCall(C)\nx;2;0;2;0\n"


def test_an_unreadable_sipp_summary_fails_only_its_step(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    good = PoolStep(1, "hold", 2, sipp_rc=0)
    pool_step.read_sipp_results(good, _sipp_files(tmp_path / "good", STAT_CSV, "Date;rtd1\nx;12.5\ny;20\n"))
    assert (good.placed, good.ok, good.failed, good.response_ms) == (2, 2, 0, [12.5, 20.0]) and not good.unreadable
    for stat, rtt, what in ((None, "Date;rtd1\n", "stat.csv"), ("StartTime;\n", "Date;rtd1\n", "stat.csv"),
                            (STAT_CSV, None, "response times")):
        step = PoolStep(1, "hold", 2, sipp_rc=0, ended=2, both_ways=2)
        pool_step.read_sipp_results(step, _sipp_files(tmp_path / f"bad{len(what)}{stat is None}", stat, rtt))
        assert not step.passed and what in step.reason, step.reason
    # a call summary whose figures do not parse: ended, not audio both ways, and said so
    records = [{"called": "t", "was": "confirmed", "age_s": 5.0, "frames_in": 240, "frames_out": 50},
               {"called": "t", "was": "confirmed", "age_s": None, "tick_gap": "?"}]
    step = PoolStep(1, "hold", 2, sipp_rc=0, ok=2)
    pool_step.audio_figures(step, records, "t")
    assert (step.ended, step.both_ways, step.unreadable) == (2, 1, ["1 call summaries"])
    # anything else a step cannot read fails that step, and the climb goes on to report it
    calls: list[float] = []

    def fake_step(step: PoolStep, *_: object) -> None:
        calls.append(step.value)
        if step.value == 4:
            raise FileNotFoundError("stat.csv")
        step.sipp_rc = 0
        step.ok = step.ended = step.both_ways = int(step.value)

    monkeypatch.setattr(pool, "run_step", fake_step)
    steps = pool._step_through(2, "hold", [2, 4, 8], [1, 2, 4, 8], None, tmp_path, PoolPlan())  # type: ignore[arg-type]
    assert calls == [2, 4] and [s.passed for s in steps] == [True, False]
    assert "FileNotFoundError" in steps[1].reason
    res = PoolResult(PoolPlan(), runs=[PoolRun(2, hold=steps)])
    assert "UNREADABLE (2 workers, hold 4" in pool_report.tables(res)


def test_limit_is_the_machine_when_a_step_failed_before_a_step_down_passed() -> None:
    ok = PoolStep(12, "hold", 24, sipp_rc=0, ok=24, ended=24, both_ways=24)
    starved = PoolStep(12, "hold", 32, sipp_rc=0, ok=32, ended=32, both_ways=14)
    assert pool_report.limit(PoolRun(12, hold=[starved, ok])) == "machine"
    assert pool_report.limit(PoolRun(12, hold=[ok])) == "steps"
    unread = PoolStep(12, "hold", 32, sipp_rc=0, ok=32, ended=32, both_ways=32, unreadable=["SIPp stat.csv"])
    assert pool_report.limit(PoolRun(12, hold=[ok, unread])) == "unreadable"  # no verdict on the machine


def test_set_overrides_reach_the_measured_servers_config(tmp_path: Path) -> None:
    from gateway.bench.pool_server import PoolServer
    from gateway.config import load_config

    settings = pool.config_overrides(["sip.pjsip_log_level=1", "media.vad_batch=false"])
    server = PoolServer(tmp_path, 2, {"agent": "echo"}, settings)
    cfg = load_config(server.config_path)
    assert cfg.sip.pjsip_log_level == 1 and cfg.media.vad_batch is False
    assert cfg.supervisor.workers == 2 and cfg.sip.port == server.sip_port  # the bench's own keys kept
