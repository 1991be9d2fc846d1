"""The per-source INVITE flood limit: the token bucket itself, its config, and a real gateway
flooded by SIPp from a non-allow-listed loopback address (127.0.0.2) while an allow-listed
source (127.0.0.1) is never throttled."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import pytest

from gateway.config import FloodConfig, load_config
from gateway.sip.flood import FloodGuard, source_ip
from gateway.tomlfile import ConfigError
from tests.conftest import SCENARIOS, need
from tests.support.gateway import Gateway, wait_until
from tests.support.sipp import run_sipp

SPEECH = str(SCENARIOS / "audio" / "hours_joe.ulaw") + ",1,0"


class FakeClock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def test_bucket_allows_the_burst_then_the_rate() -> None:
    clock = FakeClock()
    guard = FloodGuard(FloodConfig(invites_per_s=2.0, burst=3), clock)
    assert [guard.admit("192.0.2.7:5060") for _ in range(4)] == [True, True, True, False]
    clock.t += 0.25  # half a token
    assert not guard.admit("192.0.2.7:5061")  # the port does not matter: the address is the key
    clock.t += 0.25  # one whole token
    assert guard.admit("192.0.2.7:5060")
    assert not guard.admit("192.0.2.7:5060")
    assert guard.admit("192.0.2.8:5060")  # another source has its own bucket
    clock.t += 100  # refills to the burst, not beyond
    assert [guard.admit("192.0.2.7:5060") for _ in range(4)] == [True, True, True, False]
    assert guard.refused == 4


def test_allow_listed_networks_are_never_limited() -> None:
    guard = FloodGuard(FloodConfig(invites_per_s=1.0, burst=1, allow=["127.0.0.1/32", "10.0.0.0/8", "2001:db8::/32"]))
    assert all(guard.admit("127.0.0.1:5060") for _ in range(100))
    assert all(guard.admit("10.9.8.7:5060") for _ in range(100))
    assert all(guard.admit("[2001:db8::5]:5060") for _ in range(100))
    assert guard.admit("127.0.0.2:5060") and not guard.admit("127.0.0.2:5060")
    assert guard.admit("[2001:db9::5]:5060") and not guard.admit("[2001:db9::5]:5060")
    assert guard.refused == 2


def test_rate_zero_means_no_limit_and_odd_sources_are_still_limited() -> None:
    assert all(FloodGuard(FloodConfig(invites_per_s=0.0, burst=1)).admit("198.51.100.1:5060") for _ in range(50))
    guard = FloodGuard(FloodConfig(invites_per_s=1.0, burst=1, allow=["0.0.0.0/0"]))
    assert guard.admit("not-an-address") and not guard.admit("not-an-address")


def test_source_ip_parses_pjsip_addresses() -> None:
    assert str(source_ip("127.0.0.2:5061")) == "127.0.0.2"
    assert str(source_ip("[::1]:5060")) == "::1"
    assert str(source_ip("::1")) == "::1"
    assert str(source_ip("192.0.2.1")) == "192.0.2.1"
    assert source_ip("example.com:5060") is None


@pytest.mark.parametrize(
    "body, key",
    [
        ('allow = ["127.0.0.1/8"]', "allow"),  # host bits set: a typo, not a network
        ('allow = ["localhost"]', "allow"),
        ("burst = 0", "burst"),
        ("invites_per_s = -1", "invites_per_s"),
    ],
)
def test_bad_flood_config_names_the_line(tmp_path: Path, body: str, key: str) -> None:
    cfg = tmp_path / "talkover.toml"
    cfg.write_text(f"[sip]\nport = 5070\n\n[sip.flood]\n# a comment\n{body}\n")
    with pytest.raises(ConfigError) as err:
        load_config(cfg)
    assert err.value.line == 6, str(err.value)
    assert key in str(err.value)


def test_flood_config_defaults_limit_everyone() -> None:
    cfg = load_config(None).sip.flood
    assert cfg.invites_per_s > 0 and cfg.burst >= 1 and cfg.allow == []


@pytest.mark.timeout(120)
def test_flood_from_another_address_gets_503_while_the_allow_listed_one_does_not(
    gateway_factory: Callable[..., Gateway],
) -> None:
    need("sipp")
    gw = gateway_factory(sip={"flood": {"invites_per_s": 0.05, "burst": 2, "allow": ["127.0.0.1/32"]}})
    stranger = ("-i", "127.0.0.2", "-mi", "127.0.0.2")
    # The burst: two calls from 127.0.0.2 go through.
    first = run_sipp(gw, "uac_call.xml", *stranger, "-key", "rtp_file", SPEECH, "-set", "talk_ms", "500",
                     calls=2, limit=2, rate=20)  # fmt: skip
    assert first.returncode == 0, first.output
    # Past it: every further INVITE from there is refused with 503 + Retry-After. One at a time:
    # pjsua itself answers 486 to INVITEs beyond its 4 live calls, before the worker sees them.
    flood = run_sipp(gw, "uac_expect_503.xml", *stranger, calls=5, limit=1, rate=50)
    assert flood.returncode == 0, flood.output
    # The allow-listed address places 8 calls at 20 per second (far past 0.05/s, burst 2): none refused.
    allowed = run_sipp(gw, "uac_call.xml", "-key", "rtp_file", SPEECH, "-set", "talk_ms", "300",
                       calls=8, limit=4, rate=20)  # fmt: skip
    assert allowed.returncode == 0, allowed.output
    assert wait_until(lambda: gw.metric("talkover_sip_flood_rejected_total") == 5, 10, "5 flood refusals counted")
    warnings = gw.log_events("INVITE flood limit: 503")
    assert warnings and all(w["source"] == "127.0.0.2" for w in warnings), warnings
    assert len(warnings) == 1  # one line per source per LOG_EVERY_S, not one per INVITE
    rejected = gw.log_events("call rejected", reason="flood limit")
    assert len(rejected) == 5
    assert gw.metric("talkover_calls_total", 'outcome="answered"') == 10
