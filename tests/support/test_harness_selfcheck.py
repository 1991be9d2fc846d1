"""Self-checks for the SIP test peers: they must work before they can judge the gateway."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from .audio import chirp, dbfs, read_wav, silence, tone, write_wav, xcorr

pytest.importorskip("pjsua2")

from .phone_client import Phone  # noqa: E402

REF = chirp(300, 3400, 1.0)


@pytest.fixture
def chirp_wav(tmp_path: Path) -> Path:
    # Trailing silence: when play_done arrives, the chirp itself has crossed the link, even
    # with the receiver's jitter buffer grown under a loaded CI machine.
    path = tmp_path / "chirp.wav"
    write_wav(path, np.concatenate([silence(0.2), REF, silence(1.5)]))
    return path


@pytest.fixture
def pair() -> Iterator[tuple[Phone, Phone]]:
    with Phone(answer=True, ring_ms=100, user="callee") as callee, Phone(user="caller") as caller:
        yield caller, callee


def _media(status: str, direction: str):
    return lambda e: e["status"] == status and e["dir"] == direction


def test_xcorr_finds_delay_and_level() -> None:
    rx = np.concatenate([silence(0.25), (REF * 0.25).astype(np.int16), silence(0.3)])
    c = xcorr(REF, rx)
    assert c.peak > 0.99 and c.lag == 4000
    assert abs(dbfs(tone(440, 1.0, amplitude_dbfs=-20)) + 20) < 0.01


def _assert_carried_faithfully(heard: np.ndarray, rate: int) -> None:
    """Each quarter of the chirp arrives intact, in order, within 600 ms. The receiving
    jitter buffer may drop or insert a frame when a loaded machine delivers packets in bursts
    (an adaptive buffer does that by design), which splits one lag into two; a whole-chirp
    correlation would then read ~0.6 although every packet carried its audio bit-exactly."""
    quarters = np.array_split(REF, 4)
    offsets = np.cumsum([0] + [len(q) for q in quarters[:-1]])
    found = [xcorr(q, heard) for q in quarters]
    lags_ms = [(c.lag - off) * 1000 / rate for c, off in zip(found, offsets)]
    assert sum(c.peak > 0.95 for c in found) >= 3 and min(c.peak for c in found) > 0.6, found
    assert all(0 < lag < 600 for lag in lags_ms), lags_ms


def test_phone_to_phone_audio_dtmf_hold(pair: tuple[Phone, Phone], chirp_wav: Path, tmp_path: Path) -> None:
    caller, callee = pair
    caller.call(callee.uri, codecs=["G722", "PCMU"], headers={"X-Selfcheck": "1"})
    incoming = callee.wait_for("incoming_call")
    assert "X-Selfcheck: 1" in incoming["invite"]
    caller.wait_state("CONFIRMED")
    callee.wait_state("CONFIRMED")
    assert caller.wait_for("codec")["name"] == "G722"

    callee.record_start()
    caller.play(chirp_wav)
    caller.wait_for("play_done", timeout=5)
    callee.record_stop(tmp_path / "heard.wav")
    heard, rate = read_wav(tmp_path / "heard.wav")
    assert rate == 16000
    _assert_carried_faithfully(heard, rate)

    caller.dtmf("5#")
    assert [callee.wait_for("dtmf")["digit"] for _ in range(2)] == ["5", "#"]

    caller.hold("inactive")
    caller.wait_for("media_state", _media("LOCAL_HOLD", "inactive"))
    callee.wait_for("media_state", _media("REMOTE_HOLD", "inactive"))
    caller.unhold()
    caller.wait_for("media_state", _media("ACTIVE", "sendrecv"))
    callee.wait_for("media_state", _media("ACTIVE", "sendrecv"))

    caller.hangup()
    assert callee.wait_state("DISCONNECTED")["last_status_code"] == 200


def test_refer_is_accepted_without_dialing(pair: tuple[Phone, Phone]) -> None:
    caller, callee = pair
    caller.call(callee.uri)
    caller.wait_state("CONFIRMED")
    callee.wait_state("CONFIRMED")
    caller.command("transfer", target="sip:agent@127.0.0.1:9")
    assert callee.wait_for("transfer_request")["target"] == "sip:agent@127.0.0.1:9"
    statuses = [caller.wait_for("transfer_status")]
    while not statuses[-1]["final"]:
        statuses.append(caller.wait_for("transfer_status"))
    assert statuses[0]["code"] == 100  # the REFER got 202; NOTIFYs follow
    assert statuses[-1]["code"] == 500  # pjsua could not dial: no call slot left
    assert not [e for e in callee.drain() if e["event"] == "call_state" and e["state"] == "CALLING"]


@pytest.mark.skipif(shutil.which("baresip") is None, reason="baresip not installed")
def test_baresip_calls_phone(tmp_path: Path, chirp_wav: Path) -> None:
    from .baresip import Baresip

    with Phone(answer=True) as callee, Baresip(chirp_wav, seconds=2.0, workdir=tmp_path / "bs") as bs:
        callee.record_start()
        bs.dial(callee.uri)
        assert bs.wait_event("CALL_ESTABLISHED", timeout=5) is not None
        callee.wait_state("CONFIRMED")
        callee.play(chirp_wav)
        closed = bs.wait_event("CALL_CLOSED", timeout=10)  # source WAV ended
        assert closed is not None and closed["param"] == "end of file"
        callee.wait_state("DISCONNECTED")
        callee.record_stop(tmp_path / "from_baresip.wav")
    heard, _ = read_wav(tmp_path / "from_baresip.wav")
    assert xcorr(REF, heard).peak > 0.95
    baresip_heard, _ = bs.received_audio()
    assert xcorr(REF, baresip_heard).peak > 0.95
