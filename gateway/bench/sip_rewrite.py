"""The SIP text edits the impairment relay makes (gateway/bench/impair_relay.py): its own Via
on requests towards the gateway and off again on the responses, and the SDP's audio address
(c= and m=audio port) swapped for a relay port, with Content-Length fixed. Anything that does
not parse as SIP raises SipParseError; the relay decides what to do with it."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

VIA_BRANCH_PREFIX = "z9hG4bK-relay-"
_COMPACT = {"v": "via", "i": "call-id", "l": "content-length", "c": "content-type"}


class SipParseError(ValueError):
    pass


@dataclass
class SipMessage:
    start: str  # request line or status line
    headers: list[tuple[str, str]]  # (name as written, value), in order
    body: bytes

    @property
    def is_response(self) -> bool:
        return self.start.startswith("SIP/2.0 ")

    @property
    def method(self) -> str:
        return "" if self.is_response else self.start.split(" ", 1)[0]

    @property
    def status(self) -> int:
        return int(self.start.split(" ", 2)[1]) if self.is_response else 0

    def header(self, name: str) -> str:
        want = name.lower()
        for key, value in self.headers:
            if _COMPACT.get(key.lower(), key.lower()) == want:
                return value
        return ""

    @property
    def call_id(self) -> str:
        return self.header("call-id")

    @property
    def cseq_method(self) -> str:
        parts = self.header("cseq").split()
        return parts[1].upper() if len(parts) == 2 else ""

    def to_bytes(self) -> bytes:
        headers = [(k, v) for k, v in self.headers if _COMPACT.get(k.lower(), k.lower()) != "content-length"]
        headers.append(("Content-Length", str(len(self.body))))
        head = "\r\n".join([self.start] + [f"{k}: {v}" for k, v in headers])
        return head.encode("utf-8") + b"\r\n\r\n" + self.body


def parse(data: bytes) -> SipMessage:
    sep = data.find(b"\r\n\r\n")
    if sep < 0:
        raise SipParseError("no blank line after the headers")
    try:
        head = data[:sep].decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SipParseError("headers are not UTF-8") from exc
    lines = head.split("\r\n")
    start = lines[0].strip()
    if not (start.startswith("SIP/2.0 ") and start[8:11].isdigit()) and not re.fullmatch(r"[A-Z]+ \S+ SIP/2\.0", start):
        raise SipParseError(f"not a SIP start line: {start[:60]!r}")
    headers: list[tuple[str, str]] = []
    for line in lines[1:]:
        if line[:1] in (" ", "\t") and headers:  # folded continuation
            headers[-1] = (headers[-1][0], headers[-1][1] + " " + line.strip())
            continue
        name, colon, value = line.partition(":")
        if not colon or not name.strip():
            raise SipParseError(f"not a header: {line[:60]!r}")
        headers.append((name.strip(), value.strip()))
    msg = SipMessage(start, headers, data[sep + 4 :])
    if not msg.header("via") or not msg.call_id:
        raise SipParseError("no Via or no Call-ID")
    length = msg.header("content-length")
    if length:
        try:
            msg.body = msg.body[: int(length)]
        except ValueError as exc:
            raise SipParseError(f"Content-Length {length!r}") from exc
    return msg


def relay_branch(msg: SipMessage) -> str:
    """A branch of the relay's own, the same for retransmissions of one transaction."""
    digest = hashlib.sha1(f"{top_via(msg)}|{msg.method}".encode()).hexdigest()[:16]
    return VIA_BRANCH_PREFIX + digest


def top_via(msg: SipMessage) -> str:
    return msg.header("via").split(",")[0].strip()


def push_via(msg: SipMessage, host: str, port: int, branch: str) -> None:
    msg.headers.insert(0, ("Via", f"SIP/2.0/UDP {host}:{port};branch={branch};rport"))


def pop_via(msg: SipMessage) -> str:
    """Removes the top Via value (the first of a comma list) and returns it."""
    for i, (key, value) in enumerate(msg.headers):
        if _COMPACT.get(key.lower(), key.lower()) == "via":
            first, _, rest = value.partition(",")
            if rest.strip():
                msg.headers[i] = (key, rest.strip())
            else:
                del msg.headers[i]
            return first.strip()
    return ""


def sdp_audio_address(body: bytes) -> tuple[str, int] | None:
    """(c= address, m=audio port) of an SDP body, or None where it has no audio."""
    text = body.decode("utf-8", "replace")
    conn = re.search(r"^c=IN IP4 (\S+)", text, re.M)
    audio = re.search(r"^m=audio (\d+) ", text, re.M)
    if conn is None or audio is None:
        return None
    return conn.group(1), int(audio.group(1))


def rewrite_sdp(body: bytes, host: str, port: int) -> bytes:
    """The body with every c= IPv4 address set to `host`, the m=audio port to `port`, and
    a=rtcp lines dropped (RTCP then goes to port+1, which the relay does not carry)."""
    text = body.decode("utf-8", "replace")
    nl = "\r\n" if "\r\n" in text else "\n"
    out = []
    for line in text.split(nl):
        if line.startswith("c=IN IP4 "):
            line = f"c=IN IP4 {host}"
        elif line.startswith("m=audio "):
            parts = line.split(" ")
            parts[1] = str(port)
            line = " ".join(parts)
        elif line.startswith("a=rtcp:"):
            continue
        out.append(line)
    return nl.join(out).encode("utf-8")
