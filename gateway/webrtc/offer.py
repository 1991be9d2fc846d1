"""Checks on a caller's SDP offer before aiortc sees it, and the one fact the worker reads
from it itself: the audio direction (sendonly/inactive = the caller put us on hold).

aiortc's own parser raises all sorts of exceptions on hostile input; these checks turn the
common faults into clear 400 messages, and the worker still wraps aiortc (anything it
raises is a 400 too, never a crash).
"""

from __future__ import annotations

import ipaddress
import json
from dataclasses import dataclass

DIRECTIONS = ("sendrecv", "sendonly", "recvonly", "inactive")
MAX_LINES = 2000


class OfferError(ValueError):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class Offer:
    sdp: str
    audio_direction: str  # of the first audio m-line, as the caller wrote it
    entry: str = ""  # a dialplan entry named in the body (the query parameter wins)

    @property
    def holds(self) -> bool:
        """The caller stops receiving from us: a hold, as pjsua reads a SIP re-INVITE."""
        return self.audio_direction in ("sendonly", "inactive")


def parse_offer(body: str, max_bytes: int) -> Offer:
    if len(body.encode()) > max_bytes:
        raise OfferError(413, f"offer larger than {max_bytes} bytes")
    try:
        raw = json.loads(body)
    except ValueError:
        raise OfferError(400, "the body must be JSON: {\"type\": \"offer\", \"sdp\": \"...\"}") from None
    if not isinstance(raw, dict):
        raise OfferError(400, "the body must be a JSON object")
    if raw.get("type") != "offer":
        raise OfferError(400, "type must be \"offer\"")
    sdp = raw.get("sdp")
    if not isinstance(sdp, str) or not sdp.startswith("v=0"):
        raise OfferError(400, "sdp must be an SDP text starting with v=0")
    entry = raw.get("entry", "")
    if not isinstance(entry, str):
        raise OfferError(400, "entry must be a string")
    return Offer(sdp, audio_direction(sdp), entry)


def audio_direction(sdp: str) -> str:
    lines = sdp.replace("\r\n", "\n").split("\n")
    if len(lines) > MAX_LINES:
        raise OfferError(400, f"SDP of more than {MAX_LINES} lines")
    session_dir, in_audio, seen_audio, direction = "sendrecv", False, False, ""
    for line in lines:
        if line.startswith("m="):
            if seen_audio and in_audio:
                break
            in_audio = line.startswith("m=audio ")
            seen_audio = seen_audio or in_audio
        elif line.startswith("a=") and line[2:] in DIRECTIONS:
            if in_audio:
                direction = line[2:]
            elif not seen_audio:
                session_dir = line[2:]
    if not seen_audio:
        raise OfferError(400, "the offer has no audio m-line")
    return direction or session_dir


def answer_codec(sdp: str) -> str:
    """The codec an SDP answer chose for audio ("opus/48000"): its m-line's first payload type."""
    pt = ""
    for line in sdp.replace("\r\n", "\n").split("\n"):
        if line.startswith("m=audio "):
            parts = line.split()
            pt = parts[3] if len(parts) > 3 else ""
        elif pt and line.startswith(f"a=rtpmap:{pt} "):
            name = line.split(" ", 1)[1]
            return "/".join(name.split("/")[:2])
    return ""


def loopback_candidates_only(sdp: str) -> str:
    """Drops the caller's non-loopback ICE candidates: a gateway whose own candidates are all on
    loopback (tests) cannot use them, and must not send connectivity checks off this host."""
    out = []
    for line in sdp.split("\n"):
        if line.startswith("a=candidate:"):
            parts = line.split()
            if len(parts) < 5 or not ipaddress_is_loopback(parts[4]):
                continue
        out.append(line)
    return "\n".join(out)


def ipaddress_is_loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False  # an mDNS name (.local) or garbage
