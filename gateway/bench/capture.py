"""Loopback capture for the SIPp benches: tcpdump writes a pcap; this module reads it back
in pure Python and rebuilds each call from the wire.

    Capture(path, bpf).start() ... .stop()   tcpdump -i lo -U -w path (needs root, Debian tcpdump)
    read_calls(path)                         → CapturedCall per SIP Call-ID: its INVITE/200/BYE
                                               times, re-INVITEs with their SDP direction, and
                                               the RTP of both directions, each packet decoded
                                               (G.711 µ-law/A-law, numpy tables) to a level

A call's RTP is found through its SDP: the caller's media address from the INVITE, the
gateway's from the 200 OK; packets between those two addresses inside the call's lifetime
belong to it (SIPp sends every call's RTP from one port; the gateway gives each live call
its own). Times are the kernel's capture timestamps, so both directions share one clock.
"""

from __future__ import annotations

import bisect
import ipaddress
import re
import shutil
import signal
import struct
import subprocess
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np

SILENCE_DBFS = -120.0  # the level of a packet of digital silence
START_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 10.0

Addr = tuple[str, int]


class CaptureError(RuntimeError):
    pass


# -- G.711 ---------------------------------------------------------------------------------------


def _ulaw_table() -> np.ndarray:
    u = np.arange(256, dtype=np.int32) ^ 0xFF
    magnitude = ((((u & 0x0F) << 3) + 0x84) << ((u >> 4) & 7)) - 0x84
    return np.where(u & 0x80, -magnitude, magnitude).astype(np.int16)


def _alaw_table() -> np.ndarray:
    a = np.arange(256, dtype=np.int32) ^ 0x55
    exponent, mantissa = (a >> 4) & 7, a & 0x0F
    magnitude = np.where(exponent == 0, (mantissa << 4) + 8, ((mantissa << 4) + 0x108) << np.maximum(exponent - 1, 0))
    return np.where(a & 0x80, magnitude, -magnitude).astype(np.int16)


G711 = {0: _ulaw_table(), 8: _alaw_table()}  # RTP payload type → byte → linear int16


def level_dbfs(payload: bytes, payload_type: int) -> float | None:
    """RMS level of a G.711 payload in dBFS (SILENCE_DBFS for digital silence); None for a
    payload type this does not decode (G.722, telephone-event)."""
    table = G711.get(payload_type)
    if table is None or not payload:
        return None
    x = table[np.frombuffer(payload, dtype=np.uint8)].astype(np.float64)
    ms = float(np.mean(x * x))
    return SILENCE_DBFS if ms <= 0 else max(SILENCE_DBFS, 10 * np.log10(ms) - 20 * np.log10(32768.0))


# -- tcpdump ------------------------------------------------------------------------------------


class Capture:
    """tcpdump on the loopback interface, writing every matching packet at once (-U)."""

    def __init__(self, path: Path, bpf: str, interface: str = "lo") -> None:
        self.path, self.bpf, self.interface = path, bpf, interface
        self.proc: subprocess.Popen[bytes] | None = None
        self._stderr: list[str] = []
        self._listening = threading.Event()
        self.received = self.dropped = 0

    def start(self) -> "Capture":
        exe = shutil.which("tcpdump")
        if exe is None:
            raise CaptureError("tcpdump is not installed (Debian: apt-get install tcpdump; deploy/install.sh --test)")
        # -Z root: tcpdump otherwise drops to its own user and cannot write into our temp dir.
        argv = [exe, "-i", self.interface, "-n", "-U", "-s", "0", "-Z", "root", "-w", str(self.path), self.bpf]
        self.proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
        threading.Thread(target=self._read_stderr, name="tcpdump-stderr", daemon=True).start()
        if not self._listening.wait(START_TIMEOUT_S) or self.proc.poll() is not None:
            self.stop()
            why = " ".join(self._stderr).strip() or "no 'listening on' line"
            raise CaptureError(f"tcpdump did not start capturing on {self.interface} (needs root): {why}")
        return self

    def _read_stderr(self) -> None:
        assert self.proc is not None and self.proc.stderr is not None
        for raw in self.proc.stderr:
            line = raw.decode(errors="replace").strip()
            self._stderr.append(line)
            if "listening on" in line:
                self._listening.set()
        self._listening.set()  # exited: start() looks at poll()

    def stop(self) -> None:
        """SIGINT: tcpdump flushes the file and prints its counters."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        if self.proc.stderr is not None:
            self.proc.stderr.close()
        text = " ".join(self._stderr)
        m = re.search(r"(\d+) packets received by filter", text)
        self.received = int(m.group(1)) if m else 0
        m = re.search(r"(\d+) packets dropped by kernel", text)
        self.dropped = int(m.group(1)) if m else 0

    def __enter__(self) -> "Capture":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


# -- pcap → UDP datagrams --------------------------------------------------------------------------


@dataclass(slots=True)
class Datagram:
    t: float
    src: Addr
    dst: Addr
    payload: bytes


_LINK_OFFSETS = {1: 14, 113: 16, 276: 20, 0: 4, 12: 0, 101: 0}  # Ethernet, SLL, SLL2, BSD null, raw


def read_datagrams(path: Path) -> Iterator[Datagram]:
    """UDP datagrams (IPv4/IPv6, unfragmented) of a classic pcap file, in file order."""
    data = path.read_bytes()
    if len(data) < 24:
        return
    magic = data[:4]
    order = {b"\xd4\xc3\xb2\xa1": "<", b"\x4d\x3c\xb2\xa1": "<", b"\xa1\xb2\xc3\xd4": ">", b"\xa1\xb2\x3c\x4d": ">"}
    if magic not in order:
        raise CaptureError(f"{path}: not a pcap file (pcapng is not read here)")
    e = order[magic]
    frac = 1e-9 if magic in (b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\x3c\x4d") else 1e-6
    linktype = struct.unpack_from(e + "I", data, 20)[0] & 0x0FFFFFFF
    if linktype not in _LINK_OFFSETS:
        raise CaptureError(f"{path}: link type {linktype} is not supported")
    link = _LINK_OFFSETS[linktype]
    pos, header = 24, struct.Struct(e + "IIII")
    while pos + 16 <= len(data):
        sec, sub, caplen, _ = header.unpack_from(data, pos)
        pos += 16
        frame = data[pos : pos + caplen]
        pos += caplen
        dg = _udp(frame[link:], sec + sub * frac)
        if dg is not None:
            yield dg


def _udp(ip: bytes, t: float) -> Datagram | None:
    if len(ip) < 20:
        return None
    version = ip[0] >> 4
    if version == 4:
        ihl = (ip[0] & 0x0F) * 4
        if ip[9] != 17 or struct.unpack_from("!H", ip, 6)[0] & 0x3FFF:  # not UDP, or a fragment
            return None
        src_ip, dst_ip, off = ".".join(map(str, ip[12:16])), ".".join(map(str, ip[16:20])), ihl
    elif version == 6 and len(ip) >= 48 and ip[6] == 17:
        src_ip, dst_ip, off = _v6(ip[8:24]), _v6(ip[24:40]), 40
    else:
        return None
    if len(ip) < off + 8:
        return None
    sport, dport, length = struct.unpack_from("!HHH", ip, off)
    return Datagram(t, (src_ip, sport), (dst_ip, dport), ip[off + 8 : off + max(8, length)])


def _v6(raw: bytes) -> str:
    return str(ipaddress.IPv6Address(raw))


# -- RTP ---------------------------------------------------------------------------------------------


@dataclass(slots=True)
class RtpPacket:
    t: float
    pt: int
    seq: int
    ssrc: int
    marker: bool
    level: float | None  # dBFS, None if the payload type is not decoded


def parse_rtp(dg: Datagram) -> RtpPacket | None:
    p = dg.payload
    if len(p) < 12 or p[0] >> 6 != 2:
        return None
    pt = p[1] & 0x7F
    if 72 <= pt <= 76:  # RTCP shares the version bits: SR/RR/SDES/BYE/APP are 200-204
        return None
    start = 12 + 4 * (p[0] & 0x0F)
    if p[0] & 0x10 and len(p) >= start + 4:
        start += 4 + 4 * struct.unpack_from("!H", p, start + 2)[0]
    end = len(p) - (p[-1] if p[0] & 0x20 and p[-1] else 0)
    seq, _, ssrc = struct.unpack_from("!HII", p, 2)
    return RtpPacket(dg.t, pt, seq, ssrc, bool(p[1] & 0x80), level_dbfs(p[start:end], pt))


# -- SIP ---------------------------------------------------------------------------------------------

_HDR = re.compile(rb"^(call-id|i|cseq|content-length|l)\s*:\s*(.*?)\s*$", re.I | re.M)
_C_LINE = re.compile(r"^c=IN IP[46] (\S+)", re.M)
_M_LINE = re.compile(r"^m=audio (\d+) ", re.M)
_RURI_USER = re.compile(r"^(?:sips?|tel):([^@;>]+)@")
_DIRECTION = re.compile(r"^a=(sendrecv|sendonly|recvonly|inactive)\s*$", re.M)


@dataclass(slots=True)
class SipMessage:
    t: float
    src: Addr
    dst: Addr
    method: str  # request method, "" for a response
    status: int  # response status, 0 for a request
    user: str  # the Request-URI's user part (requests only)
    call_id: str
    cseq: int
    cseq_method: str
    sdp: str


def parse_sip(dg: Datagram) -> SipMessage | None:
    p = dg.payload
    if not (p.startswith(b"SIP/2.0 ") or re.match(rb"^[A-Z]+ \S+ SIP/2\.0\r?\n", p)):
        return None
    head, _, body = p.partition(b"\r\n\r\n")
    first = head.split(b"\r\n", 1)[0].decode(errors="replace")
    hdrs = {k.decode().lower(): v.decode(errors="replace") for k, v in _HDR.findall(head)}
    call_id = hdrs.get("call-id") or hdrs.get("i", "")
    cseq = hdrs.get("cseq", "0 ?").split()
    if first.startswith("SIP/2.0 "):
        code = first.split()[1:2]
        if not code or not code[0].isdigit():
            return None
        method, status, user = "", int(code[0]), ""
    else:
        method, status = first.split()[0], 0
        m = _RURI_USER.match(first.split()[1])
        user = m.group(1) if m else ""
    num = int(cseq[0]) if cseq and cseq[0].isdigit() else 0
    return SipMessage(dg.t, dg.src, dg.dst, method, status, user, call_id, num, cseq[-1] if cseq else "",
                      body.decode(errors="replace"))  # fmt: skip


def sdp_media(sdp: str) -> tuple[Addr | None, str]:
    """(audio address, direction attribute) of an SDP body."""
    c, m = _C_LINE.search(sdp), _M_LINE.search(sdp)
    d = _DIRECTION.search(sdp)
    addr = (c.group(1), int(m.group(1))) if c and m else None
    return addr, d.group(1) if d else "sendrecv"


# -- calls ---------------------------------------------------------------------------------------------


@dataclass
class Reinvite:
    cseq: int
    t: float  # the re-INVITE as sent by the caller (first copy)
    answered_t: float | None  # its 200
    direction: str  # what the caller offered


@dataclass
class CapturedCall:
    call_id: str
    invite_t: float
    called: str = ""  # the INVITE's Request-URI user
    caller_media: Addr | None = None
    gateway_media: Addr | None = None
    final_status: int = 0
    answered_t: float | None = None  # 200 to the initial INVITE
    bye_t: float | None = None
    end_t: float | None = None  # last SIP message of the call
    reinvites: list[Reinvite] = field(default_factory=list)
    caller_rtp: list[RtpPacket] = field(default_factory=list)  # caller → gateway
    agent_rtp: list[RtpPacket] = field(default_factory=list)  # gateway → caller


def read_calls(path: Path) -> list[CapturedCall]:
    """Every call in the capture (by SIP Call-ID, in INVITE order) with its RTP attached."""
    calls: dict[str, CapturedCall] = {}
    flows: dict[tuple[Addr, Addr], list[RtpPacket]] = {}
    for dg in read_datagrams(path):
        sip = parse_sip(dg)
        if sip is not None:
            _take_sip(calls, sip)
            continue
        rtp = parse_rtp(dg)
        if rtp is not None:
            flows.setdefault((dg.src, dg.dst), []).append(rtp)
    last_t = max((p[-1].t for p in flows.values() if p), default=0.0)
    for flow in flows.values():
        flow.sort(key=lambda r: r.t)
    for call in calls.values():
        if call.caller_media is None or call.gateway_media is None:
            continue
        lo = call.invite_t
        hi = (call.end_t if call.bye_t is not None and call.end_t is not None else last_t) + 0.5
        call.caller_rtp = _window(flows.get((call.caller_media, call.gateway_media), []), lo, hi)
        call.agent_rtp = _window(flows.get((call.gateway_media, call.caller_media), []), lo, hi)
    return sorted(calls.values(), key=lambda c: c.invite_t)


def _window(packets: list[RtpPacket], lo: float, hi: float) -> list[RtpPacket]:
    times = [p.t for p in packets]
    return packets[bisect.bisect_left(times, lo) : bisect.bisect_right(times, hi)]


def _take_sip(calls: dict[str, CapturedCall], m: SipMessage) -> None:
    if not m.call_id:
        return
    call = calls.get(m.call_id)
    if call is None:
        if m.method != "INVITE":
            return
        call = calls[m.call_id] = CapturedCall(m.call_id, m.t, m.user)
    call.end_t = m.t
    if m.method == "INVITE" and m.sdp:
        addr, direction = sdp_media(m.sdp)
        if m.cseq == 1:
            call.caller_media = call.caller_media or addr
        elif all(r.cseq != m.cseq for r in call.reinvites):  # a retransmission is not a new one
            call.reinvites.append(Reinvite(m.cseq, m.t, None, direction))
    elif m.method == "BYE" and call.bye_t is None:
        call.bye_t = m.t
    elif m.status >= 200 and m.cseq_method == "INVITE":
        if m.cseq == 1:
            if call.final_status == 0:
                call.final_status = m.status
            if m.status == 200 and call.answered_t is None:
                call.answered_t = m.t
                call.gateway_media = sdp_media(m.sdp)[0]
        else:
            for r in call.reinvites:
                if r.cseq == m.cseq and m.status == 200 and r.answered_t is None:
                    r.answered_t = m.t
