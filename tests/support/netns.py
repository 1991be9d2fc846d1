"""Network namespaces standing in for hosts on one machine (iproute2, needs root).

    with Lan("10.213.7.0/24") as lan:          # a bridge in a namespace of its own
        door = lan.add_host("door", 1)         # namespace + veth on the bridge, 10.213.7.1/24
        a = lan.add_host("a", 2)
        subprocess.Popen(a.argv(["python", "-m", "gateway.cli", "serve", ...]))
        a.call(lambda: urllib.request.urlopen("http://127.0.0.1:8080/healthz"))  # from inside a

The /24 exists only inside these namespaces (nothing is added to the root namespace, no
route, no forwarding), every host has its own loopback, and the namespaces (with their
veths and the bridge) are deleted on close. Processes started in a host must be stopped
before close: a namespace lives on while a process is in it. Namespace names carry this
process's pid, so a run that crashed before its close is cleaned up by the next one.
"""

from __future__ import annotations

import ctypes
import ipaddress
import os
import re
import shutil
import subprocess
import threading
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Callable, TypeVar

T = TypeVar("T")
NETNS_DIR = Path("/run/netns")
CLONE_NEWNET = 0x40000000
PREFIX = "tko"  # every namespace this helper creates: tko<pid>-<label>
_STALE = re.compile(rf"^{PREFIX}(\d+)-")


class NetnsError(RuntimeError):
    pass


def _ip(*args: str, timeout: float = 10.0) -> str:
    try:
        done = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        raise NetnsError(f"ip {' '.join(args)}: no answer in {timeout} s") from exc
    if done.returncode != 0:
        raise NetnsError(f"ip {' '.join(args)}: {done.stderr.strip() or f'exit {done.returncode}'}")
    return done.stdout


def unavailable() -> str:
    """Why namespaces cannot be made here ('' when they can): tried for real, then undone."""
    if shutil.which("ip") is None:
        return "iproute2's `ip` is not installed (deploy/install.sh --test)"
    name = f"{PREFIX}{os.getpid()}-probe"
    try:
        _ip("netns", "add", name)
    except NetnsError as exc:
        return f"cannot create a network namespace here ({exc}); root (CAP_SYS_ADMIN) is needed"
    try:
        _ip("-n", name, "link", "add", "probe0", "type", "veth", "peer", "name", "probe1")
    except NetnsError as exc:
        return f"cannot create a veth pair in a network namespace: {exc}"
    finally:
        _ip("netns", "del", name)
    return ""


def remove_stale() -> list[str]:
    """Delete namespaces left behind by runs of this helper whose process is gone."""
    removed = []
    for line in _ip("netns", "list").splitlines():
        name = line.split()[0] if line.strip() else ""
        m = _STALE.match(name)
        if m and not Path(f"/proc/{m.group(1)}").exists():
            _ip("netns", "del", name)
            removed.append(name)
    return removed


@dataclass
class Host:
    """A namespace with one address on the LAN (and its own 127.0.0.1)."""

    label: str
    netns: str
    address: str

    def argv(self, argv: list[str]) -> list[str]:
        """The command run inside this host (Popen keeps the pid: `ip netns exec` execs it)."""
        return ["ip", "netns", "exec", self.netns, *argv]

    def call(self, fn: Callable[[], T], timeout: float = 30.0) -> T:
        """Run `fn` on a thread that has entered this host's network namespace: its sockets
        (an HTTP request to this host's 127.0.0.1) are made in there. The calling thread's
        own namespace is untouched."""
        result: list[T] = []
        error: list[BaseException] = []

        def run() -> None:
            try:
                fd = os.open(NETNS_DIR / self.netns, os.O_RDONLY)
                try:
                    if ctypes.CDLL(None, use_errno=True).setns(fd, CLONE_NEWNET) != 0:
                        raise NetnsError(f"setns({self.netns}): {os.strerror(ctypes.get_errno())}")
                finally:
                    os.close(fd)
                result.append(fn())
            except BaseException as exc:  # handed to the caller
                error.append(exc)

        t = threading.Thread(target=run, name=f"netns-{self.label}", daemon=True)
        t.start()
        t.join(timeout)
        if t.is_alive():
            raise NetnsError(f"call into {self.netns} still running after {timeout} s")
        if error:
            raise error[0]
        return result[0]


@dataclass
class Lan:
    """A switch (a bridge in its own namespace) with hosts on a private /24."""

    subnet: str
    hosts: dict[str, Host] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.network = ipaddress.ip_network(self.subnet)
        if self.network.prefixlen != 24 or not self.network.is_private:
            raise NetnsError(f"{self.subnet} is not a private /24")
        self.tag = f"{PREFIX}{os.getpid()}"
        self.switch = f"{self.tag}-lan"
        self._made: list[str] = []
        try:
            self._add_netns(self.switch)
            _ip("-n", self.switch, "link", "add", "br0", "type", "bridge")
            _ip("-n", self.switch, "link", "set", "br0", "up")
        except BaseException:
            self.close()
            raise

    def _add_netns(self, name: str) -> None:
        _ip("netns", "add", name)
        self._made.append(name)
        _ip("-n", name, "link", "set", "lo", "up")

    def add_host(self, label: str, index: int) -> Host:
        """Namespace `<tag>-<label>` with eth0 = the `index`-th address of the subnet."""
        address = str(self.network.network_address + index)
        if label in self.hosts or not 0 < index < 255:
            raise NetnsError(f"host {label!r} (index {index}) already exists or is outside the /24")
        name = f"{self.tag}-{label}"
        self._add_netns(name)
        port = f"p{len(self.hosts)}"  # the bridge side, inside the switch namespace
        _ip("link", "add", "eth0", "netns", name, "type", "veth", "peer", "name", port, "netns", self.switch)
        _ip("-n", self.switch, "link", "set", port, "master", "br0")
        _ip("-n", self.switch, "link", "set", port, "up")
        _ip("-n", name, "addr", "add", f"{address}/{self.network.prefixlen}", "dev", "eth0")
        _ip("-n", name, "link", "set", "eth0", "up")
        host = Host(label, name, address)
        self.hosts[label] = host
        return host

    def close(self) -> list[str]:
        """Delete every namespace made here (their veths and the bridge go with them);
        returns the problems, so a finalizer can report them without hiding a test failure."""
        problems = []
        for name in reversed(self._made):
            try:
                _ip("netns", "del", name)
            except NetnsError as exc:
                problems.append(str(exc))
        self._made.clear()
        return problems

    def __enter__(self) -> Lan:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
