"""The impairment relay of `talkover bench network`: a UDP relay on loopback between a SIPp
caller and the gateway, for SIP and RTP (Linux netem is not available in this kernel).

SIP: the caller sends to the relay's SIP port. The relay is a stateless proxy for the
transactions it sees: it puts a Via of its own on each request (so the gateway's responses
come back through it) and takes it off the responses. In the INVITE it swaps the caller's SDP
audio address for a gateway-facing relay port, in the 200 OK the gateway's for a caller-facing
one, so RTP in both directions passes the relay. In-dialog requests (ACK, BYE) follow the
gateway's Contact and go straight to it: no Record-Route, since only the media is measured.
A message that does not parse as SIP is forwarded as it is towards the gateway (whose own
parser judges it) and dropped when it comes from the gateway.

RTP caller→gateway gets each packet's Fate from the profile (gateway/bench/impair.py) and is
sent when it is due, from the gateway-facing port (the address the gateway has in its SDP,
so pjmedia's remote-address learning keeps pointing at the relay); gateway→caller passes
unimpaired. Each call records every caller packet's arrival and forward time (or loss): the
per-packet network delays from which the bench computes its oracle.
"""

from __future__ import annotations

import heapq
import itertools
import math
import selectors
import socket
import struct
import threading
import time
from dataclasses import dataclass, field

from engine.logs import get_logger
from gateway.bench import sip_rewrite as sip
from gateway.bench.impair import Impairment, Profile, impairment

HOST = "127.0.0.1"
MAX_DATAGRAM = 65535
IDLE_WAIT_S = 0.05

log = get_logger()


@dataclass
class PacketRecord:
    seq: int  # RTP sequence number (-1 where the datagram is too short for an RTP header)
    arrived: float  # monotonic s, at the relay
    forwarded: float = math.nan  # nan = lost (or still queued at stop)

    @property
    def delay_ms(self) -> float:
        return (self.forwarded - self.arrived) * 1000


@dataclass
class CallPath:
    """One call's media through the relay."""

    call_id: str
    stream: int
    to_gateway: socket.socket  # gateway-facing: in the INVITE's SDP; sends caller RTP on
    impair: Impairment
    to_caller: socket.socket | None = None  # caller-facing: in the 200 OK's SDP
    caller_media: tuple[str, int] | None = None
    gateway_media: tuple[str, int] | None = None
    records: list[PacketRecord] = field(default_factory=list)
    back_packets: int = 0  # gateway→caller, passed unimpaired

    @property
    def lost(self) -> int:
        return sum(1 for r in self.records if math.isnan(r.forwarded))


@dataclass
class SipCounts:
    forwarded: int = 0
    verbatim: int = 0  # unparseable, passed on as they were
    dropped: int = 0


def _rtp_seq(data: bytes) -> int:
    return struct.unpack("!H", data[2:4])[0] if len(data) >= 12 else -1


class ImpairRelay:
    def __init__(self, gateway_sip: tuple[str, int], profile: Profile) -> None:
        self.gateway_sip = gateway_sip
        self.profile = profile
        self.sel = selectors.DefaultSelector()
        self.sip_sock = self._socket()
        self.sip = SipCounts()
        self.calls: dict[str, CallPath] = {}
        self._by_sock: dict[socket.socket, CallPath] = {}
        self._callers: dict[str, tuple[str, int]] = {}  # relay branch → caller's SIP address
        self._pending: list[tuple[float, int, PacketRecord, socket.socket, bytes, tuple[str, int]]] = []
        self._order = itertools.count()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="impair-relay", daemon=True)
        self.lock = threading.Lock()

    @property
    def sip_port(self) -> int:
        return int(self.sip_sock.getsockname()[1])

    def _socket(self) -> socket.socket:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind((HOST, 0))
        s.setblocking(False)
        self.sel.register(s, selectors.EVENT_READ)
        return s

    def start(self) -> "ImpairRelay":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        for key in list(self.sel.get_map().values()):
            self.sel.unregister(key.fileobj)
            key.fileobj.close()  # type: ignore[union-attr]
        self.sel.close()

    def __enter__(self) -> "ImpairRelay":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- the loop ----------------------------------------------------------------------------------

    def _run(self) -> None:
        while not self._stop.is_set():
            wait = IDLE_WAIT_S
            if self._pending:
                wait = min(wait, max(0.0, self._pending[0][0] - time.monotonic()))
            for key, _ in self.sel.select(wait):
                sock: socket.socket = key.fileobj  # type: ignore[assignment]
                try:
                    data, src = sock.recvfrom(MAX_DATAGRAM)
                except OSError:  # e.g. ICMP port unreachable from an earlier send
                    continue
                try:
                    self._received(sock, data, src)
                except Exception as exc:  # one bad datagram must not stop the relay
                    log.warning("relay: datagram not handled", error=repr(exc), source=src)
            self._send_due()

    def _received(self, sock: socket.socket, data: bytes, src: tuple[str, int]) -> None:
        if sock is self.sip_sock:
            with self.lock:
                if src == self.gateway_sip:
                    self._from_gateway(data)
                else:
                    self._from_caller(data, src)
            return
        path = self._by_sock.get(sock)
        if path is None:
            return
        if sock is path.to_caller:
            self._caller_rtp(path, data)
        elif path.caller_media is not None and path.to_caller is not None:
            path.back_packets += 1
            path.to_caller.sendto(data, path.caller_media)

    def _caller_rtp(self, path: CallPath, data: bytes) -> None:
        if path.gateway_media is None:
            return
        now = time.monotonic()
        rec = PacketRecord(_rtp_seq(data), now)
        with self.lock:
            path.records.append(rec)
        fate = path.impair.next()
        if not fate.lost:
            due = now + fate.delay_ms / 1000
            heapq.heappush(self._pending, (due, next(self._order), rec, path.to_gateway, data, path.gateway_media))

    def _send_due(self) -> None:
        now = time.monotonic()
        while self._pending and self._pending[0][0] <= now:
            _, _, rec, sock, data, dest = heapq.heappop(self._pending)
            try:
                sock.sendto(data, dest)
            except OSError:
                continue
            rec.forwarded = time.monotonic()

    # -- SIP -----------------------------------------------------------------------------------------

    def _from_caller(self, data: bytes, src: tuple[str, int]) -> None:
        try:
            msg = sip.parse(data)
        except sip.SipParseError:
            self.sip.verbatim += 1
            self.sip_sock.sendto(data, self.gateway_sip)
            return
        if not msg.is_response:
            branch = sip.relay_branch(msg)
            self._callers[branch] = src
            sip.push_via(msg, HOST, self.sip_port, branch)
            if msg.method == "INVITE":
                self._offer(msg)
        self.sip.forwarded += 1
        self.sip_sock.sendto(msg.to_bytes(), self.gateway_sip)

    def _offer(self, msg: sip.SipMessage) -> None:
        addr = sip.sdp_audio_address(msg.body)
        if addr is None:
            return
        path = self.calls.get(msg.call_id)
        if path is None:
            path = CallPath(msg.call_id, len(self.calls), self._socket(), impairment(self.profile, len(self.calls)))
            self.calls[msg.call_id] = path
            self._by_sock[path.to_gateway] = path
        path.caller_media = addr
        msg.body = sip.rewrite_sdp(msg.body, HOST, int(path.to_gateway.getsockname()[1]))

    def _from_gateway(self, data: bytes) -> None:
        try:
            msg = sip.parse(data)
        except sip.SipParseError:
            self.sip.dropped += 1
            return
        if not msg.is_response:  # none expected: without Record-Route they go to the caller's Contact
            self.sip.dropped += 1
            return
        via = sip.pop_via(msg)
        branch = via.partition("branch=")[2].split(";")[0]
        dest = self._callers.get(branch)
        if not branch.startswith(sip.VIA_BRANCH_PREFIX) or dest is None:
            self.sip.dropped += 1
            return
        if msg.cseq_method == "INVITE" and 200 <= msg.status < 300:
            self._answer(msg)
        self.sip.forwarded += 1
        self.sip_sock.sendto(msg.to_bytes(), dest)

    def _answer(self, msg: sip.SipMessage) -> None:
        path = self.calls.get(msg.call_id)
        addr = sip.sdp_audio_address(msg.body)
        if path is None or addr is None:
            return
        path.gateway_media = addr
        if path.to_caller is None:
            path.to_caller = self._socket()
            self._by_sock[path.to_caller] = path
        msg.body = sip.rewrite_sdp(msg.body, HOST, int(path.to_caller.getsockname()[1]))

    def snapshot(self) -> list[CallPath]:
        with self.lock:
            return list(self.calls.values())
