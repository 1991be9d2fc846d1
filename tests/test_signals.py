"""SignalLatch: what every talkover process's SIGTERM / SIGHUP handler is."""

from __future__ import annotations

import os
import signal

from engine.signals import SignalLatch


def test_a_signal_latches_and_wakes_the_wait() -> None:
    latch = SignalLatch().install(signal.SIGUSR1)
    try:
        assert not latch.wait(0.01)
        os.kill(os.getpid(), signal.SIGUSR1)
        assert latch.wait(30)
        assert latch.signum == signal.SIGUSR1
        assert latch.wait(0) and latch.is_set  # stays latched
    finally:
        signal.signal(signal.SIGUSR1, signal.SIG_DFL)
        latch.close()


def test_clear_rearms_for_the_next_request() -> None:
    latch = SignalLatch().install(signal.SIGUSR2)
    try:
        os.kill(os.getpid(), signal.SIGUSR2)
        assert latch.wait(30)
        latch.clear()
        assert not latch.is_set and not latch.wait(0.01)  # the old wake-up byte is gone too
        os.kill(os.getpid(), signal.SIGUSR2)
        assert latch.wait(30)
    finally:
        signal.signal(signal.SIGUSR2, signal.SIG_DFL)
        latch.close()


def test_set_from_code_latches_without_a_signal() -> None:
    latch = SignalLatch()
    try:
        latch.set()
        assert latch.wait(0) and latch.signum == 0
    finally:
        latch.close()
