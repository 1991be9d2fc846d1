"""Talking to a running Kamailio: its RPC through `kamcmd`, and a bare SIP OPTIONS probe.

Draining a worker = `dispatcher.set_state d 1 <uri>`: a disabled destination gets no new
call and is not pinged, so a successful OPTIONS does not bring it back behind our back;
its live calls go on (in-dialog requests follow Record-Route, not the dispatcher).
Restoring it = `ip` (inactive + probing: back at its first answered OPTIONS) or `ap`.

kamcmd prints a struct as indented `KEY: value` / `KEY: {` ... `}` lines, keys repeating
(one DEST per destination); kamcmd exits 0 even on an RPC error, which it prints as
`error: <code> - <reason>`.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
import uuid
from dataclasses import dataclass
from typing import Callable, Union

RpcValue = Union[str, "RpcStruct"]
RpcStruct = list[tuple[str, RpcValue]]

STATES = {"A": "active", "I": "inactive", "T": "trying", "D": "disabled"}


class KamailioError(RuntimeError):
    """Kamailio could not be configured, started or reached; the message says why."""


class KamailioRpcError(KamailioError):
    """An RPC through kamcmd failed or timed out."""


def find_binary(name: str) -> str:
    found = shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/local/sbin")
    if not found:
        raise KamailioError(f"{name!r} not found: install the Debian package 'kamailio' (deploy/install.sh does)")
    return found


@dataclass(frozen=True)
class Destination:
    """One dispatcher destination as `dispatcher.list` reports it."""

    set_id: int
    uri: str
    flags: str  # e.g. "AP": state letter (A/I/T/D) + P (probing) or X (not probed)
    priority: int
    attrs: str
    load: int  # live calls Kamailio counts for it (call-load dispatching)

    @property
    def state(self) -> str:
        return STATES.get(self.flags[:1], "unknown")

    @property
    def probing(self) -> bool:
        return self.flags[1:2] == "P"

    @property
    def takes_calls(self) -> bool:
        return self.state in ("active", "trying")


def parse_kamcmd(text: str) -> RpcStruct:
    """kamcmd's struct output → nested [(key, value)] lists (values are str or lists)."""
    root: RpcStruct = []
    stack: list[RpcStruct] = [root]
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line == "{":
            continue
        if line == "}":
            if len(stack) > 1:
                stack.pop()
            continue
        key, sep, value = line.partition(":")
        if not sep:
            stack[-1].append(("", line))
            continue
        value = value.strip()
        if value == "{":
            child: RpcStruct = []
            stack[-1].append((key.strip(), child))
            stack.append(child)
        else:
            stack[-1].append((key.strip(), "" if value == "<null string>" else value))
    return root


def _get(struct: RpcStruct, key: str, default: RpcValue = "") -> RpcValue:
    return next((v for k, v in struct if k == key), default)


def _all(struct: RpcStruct, key: str) -> list[RpcStruct]:
    return [v for k, v in struct if k == key and isinstance(v, list)]


def parse_dispatcher_list(text: str) -> list[Destination]:
    out: list[Destination] = []
    for records in _all(parse_kamcmd(text), "RECORDS"):
        for ds_set in _all(records, "SET"):
            set_id = int(str(_get(ds_set, "ID", "0")) or 0)
            for targets in _all(ds_set, "TARGETS"):
                for dest in _all(targets, "DEST"):
                    attrs = _get(dest, "ATTRS", [])
                    runtime = _get(dest, "RUNTIME", [])
                    out.append(Destination(
                        set_id=set_id,
                        uri=str(_get(dest, "URI")),
                        flags=str(_get(dest, "FLAGS")),
                        priority=int(str(_get(dest, "PRIORITY", "0")) or 0),
                        attrs=str(_get(attrs, "BODY")) if isinstance(attrs, list) else "",
                        load=int(str(_get(runtime, "DLGLOAD", "0")) or 0) if isinstance(runtime, list) else 0,
                    ))
    return out


class KamailioRpc:
    """`kamcmd -s unix:<socket> ...`, each call bounded by `timeout_s`."""

    def __init__(self, socket_path: str, kamcmd: str = "kamcmd", timeout_s: float = 5.0) -> None:
        self.socket_path = socket_path
        self.kamcmd = kamcmd
        self.timeout_s = timeout_s

    def call(self, method: str, *args: str | int) -> str:
        argv = [find_binary(self.kamcmd), "-s", f"unix:{self.socket_path}", method, *map(str, args)]
        try:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=self.timeout_s)
        except subprocess.TimeoutExpired as exc:
            raise KamailioRpcError(f"{method}: no answer from {self.socket_path} in {self.timeout_s} s") from exc
        out = done.stdout.strip()
        if done.returncode != 0 or out.startswith("error:"):
            why = out or done.stderr.strip() or f"kamcmd exited {done.returncode}"
            raise KamailioRpcError(f"{method} {' '.join(map(str, args))}: {why}")
        return out

    def main_pid(self) -> int | None:
        """The pid of the Kamailio answering on this socket (None if nobody answers)."""
        if not os.path.exists(self.socket_path):
            return None
        try:
            first = self.call("core.ps").split(maxsplit=1)
        except KamailioRpcError:
            return None
        return int(first[0]) if first and first[0].isdigit() else None

    def destinations(self) -> list[Destination]:
        return parse_dispatcher_list(self.call("dispatcher.list"))

    def destination(self, uri: str) -> Destination:
        for d in self.destinations():
            if d.uri == uri:
                return d
        raise KamailioRpcError(f"{uri} is not a dispatcher destination")

    def set_state(self, uri: str, state: str, set_id: int = 1) -> None:
        """state: a, i, t or d, optionally followed by p (probing), e.g. "ip"."""
        if state[:1] not in "aitd" or state[1:] not in ("", "p") or not state:
            raise KamailioRpcError(f"state {state!r}: use a, i, t or d, optionally followed by p")
        self.call("dispatcher.set_state", state, set_id, uri)

    def drain(self, uri: str, set_id: int = 1) -> None:
        """No new calls to this worker; its live calls go on."""
        self.set_state(uri, "d", set_id)

    def restore(self, uri: str, *, verified: bool = True, set_id: int = 1) -> None:
        """Back in the pool: at its next answered OPTIONS (verified) or at once."""
        self.set_state(uri, "ip" if verified else "ap", set_id)

    def wait_for(self, uri: str, predicate: Callable[[Destination], bool], timeout_s: float) -> Destination:
        """Poll dispatcher.list until the destination satisfies predicate (raises on timeout)."""
        deadline = time.monotonic() + timeout_s
        while True:
            dest = self.destination(uri)
            if predicate(dest):
                return dest
            if time.monotonic() > deadline:
                raise KamailioRpcError(f"{uri} still {dest.flags} ({dest.state}) after {timeout_s} s")
            time.sleep(0.1)  # Kamailio's state changes on its own ping timer; poll it, bounded


def sip_options_status(host: str, port: int, timeout_s: float = 1.0, *, source: str = "",
                       method: str = "OPTIONS", headers: dict[str, str] | None = None) -> int | None:
    """Send one out-of-dialog SIP request (OPTIONS by default) over UDP, from `source` if
    given; its final status code, or None without an answer in time."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout_s)
        try:
            if source:
                sock.bind((source, 0))
            sock.connect((host, port))
        except OSError:
            return None
        local_host, local_port = sock.getsockname()[:2]
        branch, tag, call_id = (uuid.uuid4().hex[:16] for _ in range(3))
        hostport = f"[{host}]:{port}" if family == socket.AF_INET6 else f"{host}:{port}"
        local = f"[{local_host}]:{local_port}" if family == socket.AF_INET6 else f"{local_host}:{local_port}"
        fields = {
            "Via": f"SIP/2.0/UDP {local};rport;branch=z9hG4bK{branch}",
            "Max-Forwards": "70",
            "From": f"<sip:probe@{local}>;tag={tag}",
            "To": f"<sip:{hostport}>",
            "Call-ID": f"{call_id}@talkover",
            "CSeq": f"1 {method}",
            **(headers or {}),
            "Content-Length": "0",
        }
        msg = f"{method} sip:{hostport} SIP/2.0\r\n" + "".join(f"{k}: {v}\r\n" for k, v in fields.items()) + "\r\n"
        deadline = time.monotonic() + timeout_s
        try:
            sock.send(msg.encode())
            while time.monotonic() < deadline:
                sock.settimeout(max(0.01, deadline - time.monotonic()))
                parts = sock.recv(65535).split(b" ", 2)
                if len(parts) >= 2 and parts[0] == b"SIP/2.0" and parts[1].isdigit() and int(parts[1]) >= 200:
                    return int(parts[1])
        except OSError:  # timeout, or ICMP port unreachable (nothing listening)
            return None
    return None
