"""SIP accounts: the local one that takes every INVITE, and an optional registration."""

from __future__ import annotations

from typing import Callable

import pjsua2 as pj

from engine.logs import get_logger
from gateway import metrics
from gateway.config import SipConfig

log = get_logger(component="account")

IncomingHandler = Callable[[pj.Account, pj.OnIncomingCallParam], None]


class GatewayAccount(pj.Account):  # type: ignore[misc]
    def __init__(self, on_incoming: IncomingHandler, aor: str = "") -> None:
        super().__init__()
        self._on_incoming = on_incoming
        self.aor = aor

    def onIncomingCall(self, prm: pj.OnIncomingCallParam) -> None:
        self._on_incoming(self, prm)

    def onRegState(self, prm: pj.OnRegStateParam) -> None:
        info = self.getInfo()
        up = bool(info.regIsActive)
        metrics.REGISTRATION_UP.labels(self.aor).set(1 if up else 0)
        metrics.REGISTRATION_CODE.labels(self.aor).set(prm.code)
        log.info("registration", aor=self.aor, code=prm.code, reason=prm.reason, active=up, expires_s=info.regExpiresSec)


def _media_config(acfg: pj.AccountConfig, cfg: SipConfig) -> None:
    tc = acfg.mediaConfig.transportConfig
    tc.port = cfg.rtp_port
    tc.portRange = cfg.rtp_port_range
    tc.boundAddress = cfg.host
    tc.publicAddress = cfg.public_address


def create_accounts(cfg: SipConfig, on_incoming: IncomingHandler) -> list[GatewayAccount]:
    """The local account (default: it receives INVITEs to any user) and the registration."""
    local = GatewayAccount(on_incoming)
    acfg = pj.AccountConfig()
    acfg.idUri = f"sip:talkover@{cfg.public_address or cfg.host}:{cfg.port}"
    _media_config(acfg, cfg)
    local.create(acfg, True)
    accounts = [local]
    reg = cfg.register
    if reg.enabled:
        racc = GatewayAccount(on_incoming, reg.aor)
        rcfg = pj.AccountConfig()
        rcfg.idUri = reg.aor
        rcfg.regConfig.registrarUri = reg.registrar
        rcfg.regConfig.timeoutSec = reg.expires_s
        rcfg.regConfig.retryIntervalSec = reg.retry_s
        rcfg.sipConfig.authCreds.append(pj.AuthCredInfo("digest", reg.realm, reg.username, 0, reg.password))
        _media_config(rcfg, cfg)
        metrics.REGISTRATION_UP.labels(reg.aor).set(0)
        racc.create(rcfg, False)
        accounts.append(racc)
    return accounts
