#!/usr/bin/env python3
"""Write a pcap of one RTP stream carrying RFC 4733 telephone-events, for SIPp's
``<exec play_pcap_audio="...">`` (see sipp_scenarios/uac_dtmf.xml).

Standard library only.  Run from the repository root::

    python sipp_scenarios/pcap/make_dtmf_pcap.py                       # the committed files
    python sipp_scenarios/pcap/make_dtmf_pcap.py --digits 42 --out /tmp/dtmf_42.pcap

Stream layout (one SSRC, one continuous sequence-number / timestamp space,
20 ms per packet, like a phone that sends PCMU and switches to events while a
key is pressed):

* ``--lead`` ms of PCMU silence (payload type 0, 160 x 0xFF),
* per digit: ``--tone`` ms of event packets (PT ``--pt``, default 101): the
  first has the RTP marker bit set; all carry the event's start timestamp; the
  duration field grows by 160 per packet; then the final packet (E bit set,
  same timestamp, full duration) is sent three times (RFC 4733 2.5.1.4), at
  20 ms intervals,
* ``--gap`` ms of PCMU silence between digits and after the last one.

Volume field is 10 (-10 dBm0).  Frames are Ethernet / IPv4 / UDP,
127.0.0.1:6000 -> 127.0.0.1:6000; SIPp replaces the UDP ports (source = -mp
port, destination = the SUT's m=audio port) and the IP addresses, and fixes the
UDP checksum, but keeps the RTP header and the packet timing from the pcap.
"""

from __future__ import annotations

import argparse
import struct
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent

EVENTS = {**{str(d): d for d in range(10)}, "*": 10, "#": 11, "A": 12, "B": 13, "C": 14, "D": 15}

DEFAULT_FILES = {
    "dtmf_123.pcap": "123",
    "dtmf_all.pcap": "0123456789*#",
}

SSRC = 0x7A1C0DE5
TS0 = 16000
SEQ0 = 1000
PTIME_S = 0.020
SAMPLES = 160  # 20 ms at 8 kHz


def ipv4_checksum(hdr: bytes) -> int:
    s = sum(struct.unpack("!10H", hdr))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def frame(rtp: bytes, port: int = 6000) -> bytes:
    udp = struct.pack("!HHHH", port, port, 8 + len(rtp), 0) + rtp
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0x4000, 64, 17, 0,
                     bytes([127, 0, 0, 1]), bytes([127, 0, 0, 1]))
    ip = ip[:10] + struct.pack("!H", ipv4_checksum(ip)) + ip[12:]
    eth = b"\x02\x00\x00\x00\x00\x02" + b"\x02\x00\x00\x00\x00\x01" + b"\x08\x00"
    return eth + ip + udp


def rtp(pt: int, seq: int, ts: int, payload: bytes, marker: bool = False) -> bytes:
    return struct.pack("!BBHII", 0x80, (0x80 if marker else 0) | pt, seq & 0xFFFF,
                       ts & 0xFFFFFFFF, SSRC) + payload


def build(digits: str, pt: int, tone_ms: int, gap_ms: int, lead_ms: int) -> tuple[bytes, list[str]]:
    packets: list[bytes] = []  # one RTP packet per 20 ms tick
    desc: list[str] = []
    silence = b"\xff" * SAMPLES

    def audio(ms: int) -> None:
        for _ in range(ms // 20):
            n = len(packets)
            packets.append(rtp(0, SEQ0 + n, TS0 + n * SAMPLES, silence))

    audio(lead_ms)
    for ch in digits:
        if ch not in EVENTS:
            raise SystemExit(f"unsupported digit {ch!r}")
        ev = EVENTS[ch]
        start = len(packets)
        ts = TS0 + start * SAMPLES
        k = max(1, tone_ms // 20)
        for i in range(k):
            n = len(packets)
            payload = struct.pack("!BBH", ev, 10, SAMPLES * (i + 1))
            packets.append(rtp(pt, SEQ0 + n, ts, payload, marker=(i == 0)))
        for _ in range(3):
            n = len(packets)
            payload = struct.pack("!BBH", ev, 0x80 | 10, SAMPLES * k)
            packets.append(rtp(pt, SEQ0 + n, ts, payload))
        desc.append(f"{ch}: event {ev}, rtp ts {ts}, starts {start * 20} ms, "
                    f"{k} packets + 3 end, duration {SAMPLES * k} samples")
        audio(gap_ms)

    out = bytearray(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))  # LINKTYPE_ETHERNET
    t0 = 1_700_000_000.0
    for i, p in enumerate(packets):
        f = frame(p)
        t = t0 + i * PTIME_S
        sec = int(t)
        usec = int(round((t - sec) * 1e6))
        out += struct.pack("<IIII", sec, usec, len(f), len(f)) + f
    return bytes(out), desc


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--digits", help="digits to send (0-9 * # A-D); default: write the committed files")
    ap.add_argument("--out", type=Path, help="output pcap (with --digits)")
    ap.add_argument("--pt", type=int, default=101, help="telephone-event payload type (default 101)")
    ap.add_argument("--tone", type=int, default=200, help="ms per digit (default 200)")
    ap.add_argument("--gap", type=int, default=200, help="ms of silence between digits (default 200)")
    ap.add_argument("--lead", type=int, default=200, help="ms of silence before the first digit (default 200)")
    a = ap.parse_args()
    jobs = {a.out or HERE / f"dtmf_{a.digits}.pcap": a.digits} if a.digits else \
        {HERE / name: d for name, d in DEFAULT_FILES.items()}
    for path, digits in jobs.items():
        data, desc = build(digits, a.pt, a.tone, a.gap, a.lead)
        path.write_bytes(data)
        print(f"wrote {path} ({len(data)} bytes)")
        for line in desc:
            print("  " + line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
