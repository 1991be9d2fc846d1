"""The pjsua2 endpoint of one gateway worker: library lifecycle, transports, codecs, logging.

Threads: SIP callbacks run on pjsua's worker thread, frame callbacks on the conference
bridge's clock thread, DTMF on the media ioqueue thread. The worker's control loop runs on
the thread that called `start()` (registered with pjsua by libCreate). Any other thread
must call `register_thread()` before touching pjsua2, or pjsua2 aborts the process.
"""

from __future__ import annotations

import ctypes
import gc
import glob
import os
import re
import threading
from typing import Callable

import pjsua2 as pj

from engine.logs import get_logger
from engine.session import FRAME_MS, SAMPLE_RATE
from gateway.config import SipConfig

log = get_logger(component="sip")
pjlog = get_logger(component="pjsip")

_PJ_LEVELS = {0: "error", 1: "error", 2: "warning", 3: "info", 4: "debug", 5: "debug", 6: "debug"}
PJSUA_ASK_CALLS = 256
PJ_LOG_HAS_SENDER = 64
_CODEC_IDS = {"G722/16000": "G722/16000/1", "PCMU/8000": "PCMU/8000/1", "PCMA/8000": "PCMA/8000/1"}


class PjLogWriter(pj.LogWriter):  # type: ignore[misc]
    """Routes PJSIP's own log into structlog."""

    def write(self, entry: pj.LogEntry) -> None:
        sender, _, msg = entry.msg.strip().partition(" ")  # decor = sender only
        getattr(pjlog, _PJ_LEVELS.get(entry.level, "debug"))(msg.strip(), sender=sender, pj_level=entry.level)


def _native() -> ctypes.CDLL:
    return ctypes.CDLL(glob.glob(os.path.join(os.path.dirname(pj.__file__), "_pjsua2*.so"))[0])


def pjsua_max_calls() -> int:
    """pjsua_call_get_max_count(): the compiled PJSUA_MAX_CALLS cap (4 in the PyPI wheel)."""
    return int(_native().pjsua_call_get_max_count())


class RejectCounter(pj.Endpoint):  # type: ignore[misc]
    """pjsua answers 486 by itself past its call cap; this is the only notice we get."""

    def __init__(self, on_rejected: Callable[[int, str], None]) -> None:
        super().__init__()
        self._on_rejected = on_rejected

    def onRejectedIncomingCall(self, prm: pj.OnRejectedIncomingCallParam) -> None:
        self._on_rejected(prm.statusCode, prm.reason)


def _with_discard_algo(ep_cfg: pj.EpConfig, algo: int) -> pj.EpConfig:
    """jbDiscardAlgo is an enum SWIG will not take from Python; the JSON reader does."""
    doc = pj.JsonDocument()
    doc.writeObject(ep_cfg)
    text = re.sub(r'("jbDiscardAlgo"\s*:\s*)\d+', rf"\g<1>{algo}", doc.saveString())
    out, doc2 = pj.EpConfig(), pj.JsonDocument()
    doc2.loadString(text)
    doc2.readObject(out)
    return out


class SipEndpoint:
    def __init__(self, cfg: SipConfig, on_rejected: Callable[[int, str], None]) -> None:
        self.cfg = cfg
        self.ep = RejectCounter(on_rejected)
        self._writer = PjLogWriter()

    def start(self) -> None:
        _native().pj_log_set_level(min(self.cfg.pjsip_log_level, 1))  # quiet until our writer is set
        self.ep.libCreate()
        ep_cfg = pj.EpConfig()
        ua = ep_cfg.uaConfig
        ua.maxCalls = PJSUA_ASK_CALLS  # pjsua clamps this to its compiled cap
        ua.threadCnt = 1
        ua.userAgent = self.cfg.user_agent
        med = ep_cfg.medConfig
        med.clockRate = SAMPLE_RATE
        med.sndClockRate = SAMPLE_RATE
        med.audioFramePtime = FRAME_MS
        med.ptime = FRAME_MS
        med.channelCount = 1
        med.noVad = True
        med.sndAutoCloseTime = -1  # the null device is the media clock: never let pjsua close it
        med.threadCnt = 1
        med.maxMediaPorts = 4 * PJSUA_ASK_CALLS + 8
        jb = self.cfg.jitter
        med.jbInit, med.jbMinPre, med.jbMaxPre, med.jbMax = jb.init_ms, jb.min_pre_ms, jb.max_pre_ms, jb.max_ms
        ep_cfg = _with_discard_algo(ep_cfg, jb.discard_algo)
        lc = ep_cfg.logConfig
        lc.writer = self._writer
        lc.level = self.cfg.pjsip_log_level
        lc.consoleLevel = self.cfg.pjsip_log_level
        lc.decor = PJ_LOG_HAS_SENDER  # structlog adds time and level
        self.ep.libInit(ep_cfg)
        for kind in self.cfg.transports:
            tcfg = pj.TransportConfig()
            tcfg.port = self.cfg.port
            tcfg.boundAddress = self.cfg.host
            tcfg.publicAddress = self.cfg.public_address
            tp = pj.PJSIP_TRANSPORT_UDP if kind == "udp" else pj.PJSIP_TRANSPORT_TCP
            self.ep.transportCreate(tp, tcfg)
        self.ep.audDevManager().setNullDev()
        self._set_codecs()
        self.ep.libStart()
        log.info("sip listening", host=self.cfg.host, port=self.cfg.port, transports=self.cfg.transports)

    def _set_codecs(self) -> None:
        wanted = [_CODEC_IDS[c] for c in self.cfg.codecs]
        for info in self.ep.codecEnum2():
            cid = info.codecId
            prio = 255 - wanted.index(cid) if cid in wanted else 0
            self.ep.codecSetPriority(cid, prio)

    def register_thread(self, name: str) -> None:
        if not self.ep.libIsThreadRegistered():
            self.ep.libRegisterThread(name or threading.current_thread().name)

    def stop_media_clock(self) -> None:
        """Detach the null sound device: the conference bridge stops ticking (no more
        onFrameRequested/onFrameReceived), so ports can be destroyed safely."""
        try:
            self.ep.audDevManager().setNoDev()
        except pj.Error as exc:
            log.warning("could not stop the media clock", error=exc.info())

    def destroy(self) -> None:
        gc.collect()
        self.ep.libDestroy()
