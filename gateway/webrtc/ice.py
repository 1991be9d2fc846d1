"""ICE policy of the WebRTC worker: which host addresses aioice offers, how fast a vanished
peer is noticed, and the STUN/TURN servers.

aioice gathers host candidates from every interface except loopback and exposes no option
for it; its module-level `get_host_addresses` and consent constants are looked up at call
time, so the worker (its own process) sets them once at start. With `host_addresses =
["127.0.0.1"]` every call runs on loopback (tests); [] keeps aioice's own choice.
"""

from __future__ import annotations

from typing import Callable

import aioice.ice
from aiortc import RTCConfiguration, RTCIceServer

from gateway.config import WebRtcConfig

_aioice_host_addresses: Callable[[bool, bool], list[str]] = aioice.ice.get_host_addresses


def apply_ice_policy(cfg: WebRtcConfig) -> None:
    wanted = list(cfg.host_addresses)

    def host_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
        if not wanted:
            return _aioice_host_addresses(use_ipv4, use_ipv6)
        return [a for a in wanted if (":" in a and use_ipv6) or (":" not in a and use_ipv4)]

    aioice.ice.get_host_addresses = host_addresses
    aioice.ice.CONSENT_INTERVAL = cfg.consent_interval_s
    aioice.ice.CONSENT_FAILURES = cfg.consent_failures


def rtc_configuration(cfg: WebRtcConfig) -> RTCConfiguration:
    """iceServers=[] matters: aiortc's default adds a public STUN server."""
    servers = [RTCIceServer(urls=s.urls, username=s.username or None, credential=s.credential or None)
               for s in cfg.ice_servers]
    return RTCConfiguration(iceServers=servers)
