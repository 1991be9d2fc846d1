"""The worker's engine link when the engine dies under it."""

from __future__ import annotations

import socket

from gateway.engine_link import EngineLink


def test_flushing_the_backlog_of_a_socket_closed_meanwhile_does_not_raise() -> None:
    link = EngineLink("/nonexistent", on_message=lambda m: None, on_state=lambda up: None)
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    link._sock = ours
    link._backlog.append(b"slot request")
    ours.close()  # what the receiver thread does when the engine's end goes away
    link.flush_backlog()  # the control loop's next pass: no exception may reach the worker
    theirs.close()
