"""Every SIPp scenario in sipp_scenarios/ runs under real SIPp against a live gateway and
passes (SIPp exits 0); what SIPp cannot see (audio, DTMF) is checked on the gateway side."""

from __future__ import annotations

import os
from typing import Callable

import pytest

from tests.conftest import SCENARIOS, need
from tests.support.gateway import Gateway, wait_until
from tests.support.phone_client import Phone
from tests.support.sipp import run_sipp

AUDIO = SCENARIOS / "audio"


@pytest.fixture(autouse=True)
def _sipp_installed() -> None:
    need("sipp")


@pytest.mark.parametrize(
    "scenario, stream, codec",
    [
        ("uac_call.xml", "hours_joe.ulaw,1,0", "PCMU/8000"),
        ("uac_call_pcma.xml", "hours_joe.alaw,1,8", "PCMA/8000"),
        ("uac_call_g722.xml", "hours_joe.g722,1,9", "G722/16000"),
    ],
)
def test_uac_call_streams_speech_that_the_engine_hears(gateway: Gateway, scenario: str, stream: str, codec: str) -> None:
    result = run_sipp(gateway, scenario, "-key", "rtp_file", str(AUDIO / stream), "-set", "talk_ms", "6000")
    assert result.returncode == 0, result.output
    confirmed = gateway.wait_log("call confirmed")
    assert confirmed["codec"] == codec
    turns = gateway.turns(confirmed["call_id"])
    assert "caller turn ended" in turns, turns  # the caller's speech was detected as a turn


def test_uac_cancel_while_ringing_gets_487(gateway_factory: Callable[..., Gateway]) -> None:
    gw = gateway_factory(entries=[{"name": "rings", "numbers": ["*"], "ring_ms": 5000}])
    result = run_sipp(gw, "uac_cancel.xml", "-set", "ring_ms", "500")
    assert result.returncode == 0, result.output
    wait_until(lambda: gw.metric("talkover_calls_total", 'outcome="cancelled"') == 1, 10, "cancelled call counted")
    wait_until(lambda: gw.metric("talkover_engine_slots_in_use") == 0, 10, "engine slot released")


def test_uac_malformed_gets_4xx_or_is_dropped_and_the_next_call_works(gateway: Gateway) -> None:
    pid = gateway.worker_pid()
    result = run_sipp(gateway, "uac_malformed.xml", "-trace_logs", timeout=90)
    assert result.returncode == 0, result.output
    assert gateway.worker_pid() == pid and gateway.health()[0] == 200
    with Phone() as phone:
        phone.call(gateway.uri())
        phone.wait_state("CONFIRMED")
        phone.hangup()


def test_uac_hold_sendonly_inactive_sendrecv(gateway: Gateway) -> None:
    result = run_sipp(gateway, "uac_hold.xml", "-key", "rtp_file", str(AUDIO / "hours_joe.ulaw,1,0"),
                      "-set", "hold_ms", "1000")
    assert result.returncode == 0, result.output
    turns = gateway.turns()
    assert turns.count("hold") >= 1 and "resume from hold" in turns


@pytest.mark.skipif(os.geteuid() != 0, reason="SIPp's play_pcap_audio needs a raw socket (root)")
def test_uac_dtmf_rfc4733_digits_reach_the_session(gateway: Gateway) -> None:
    result = run_sipp(gateway, "uac_dtmf.xml", "-key", "dtmf_pcap", "pcap/dtmf_123.pcap", "-set", "talk_ms", "4000")
    assert result.returncode == 0, result.output
    assert [t for t in gateway.turns() if t.startswith("dtmf")] == ["dtmf 1", "dtmf 2", "dtmf 3"]


def test_uac_expect_404_for_an_unknown_number(gateway_factory: Callable[..., Gateway]) -> None:
    gw = gateway_factory(entries=[{"name": "only", "numbers": ["1000"]}])
    result = run_sipp(gw, "uac_expect_404.xml", service="0000000")
    assert result.returncode == 0, result.output


def test_uac_expect_503_with_retry_after_when_no_engine_slot(gateway_factory: Callable[..., Gateway]) -> None:
    gw = gateway_factory(engine={"slots": 1}, sip={"retry_after_s": 7})
    with Phone() as phone:
        phone.call(gw.uri())
        phone.wait_state("CONFIRMED")
        result = run_sipp(gw, "uac_expect_503.xml", "-trace_logs")
        phone.hangup()
    assert result.returncode == 0, result.output
    logs = "".join(p.read_text() for p in result.workdir.glob("*_logs.log"))
    assert "7" in logs


def test_uac_options_gets_200(gateway: Gateway) -> None:
    result = run_sipp(gateway, "uac_options.xml", calls=3, limit=1, rate=10)
    assert result.returncode == 0, result.output
