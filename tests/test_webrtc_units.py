"""Units of the WebRTC side that need no network: offer checks, the audio direction that
means hold, the answer's codec, the loopback candidate filter, [webrtc] config errors, the
caller-audio FIFO and the signalling request codec."""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from av import AudioFrame

from gateway.config import load_config
from gateway.tomlfile import ConfigError
from gateway.webrtc.audio import InboundAudio
from gateway.webrtc.ice import rtc_configuration
from gateway.webrtc.offer import OfferError, answer_codec, audio_direction, loopback_candidates_only, parse_offer
from gateway.webrtc.signalling import SignalRequest

OFFER = "\r\n".join([
    "v=0", "o=- 1 1 IN IP4 0.0.0.0", "s=-", "t=0 0", "a=group:BUNDLE 0 1",
    "m=audio 9 UDP/TLS/RTP/SAVPF 111 0", "c=IN IP4 0.0.0.0", "a=mid:0", "a={dir}",
    "a=rtpmap:111 opus/48000/2", "a=rtpmap:0 PCMU/8000",
    "a=candidate:1 1 udp 2122260223 192.0.2.2 50000 typ host",
    "a=candidate:2 1 udp 2122194687 127.0.0.1 50001 typ host",
    "a=candidate:3 1 udp 2122194687 abcd.local 50002 typ host",
    "m=application 9 UDP/DTLS/SCTP webrtc-datachannel", "a=mid:1", "a=sendrecv", "",
])


@pytest.mark.parametrize("direction, holds", [("sendrecv", False), ("recvonly", False), ("sendonly", True), ("inactive", True)])
def test_the_audio_direction_decides_hold(direction: str, holds: bool) -> None:
    offer = parse_offer(json.dumps({"type": "offer", "sdp": OFFER.format(dir=direction)}), 65536)
    assert offer.audio_direction == direction and offer.holds is holds


def test_session_level_direction_applies_when_the_m_line_has_none() -> None:
    sdp = "v=0\r\na=inactive\r\nm=audio 9 RTP/AVP 0\r\n"
    assert audio_direction(sdp) == "inactive"


@pytest.mark.parametrize("body, status", [
    ("[]", 400), ("{", 400), ('{"type": "offer"}', 400), ('{"type": "offer", "sdp": "v=0", "entry": 3}', 400),
    ('{"type": "offer", "sdp": "v=0\\r\\nm=video 9 RTP/AVP 96\\r\\n"}', 400), ("x" * 70000, 413),
])
def test_broken_offers_get_a_status_and_a_reason(body: str, status: int) -> None:
    with pytest.raises(OfferError) as err:
        parse_offer(body, 65536)
    assert err.value.status == status and str(err.value)


def test_answer_codec_and_loopback_filter() -> None:
    sdp = OFFER.format(dir="sendrecv")
    assert answer_codec(sdp) == "opus/48000"
    kept = loopback_candidates_only(sdp)
    assert "127.0.0.1 50001" in kept and "192.0.2.2" not in kept and ".local" not in kept
    assert "m=application" in kept


def test_webrtc_config_errors_name_the_line(tmp_path: Path) -> None:
    good = tmp_path / "good.toml"
    good.write_text('[webrtc]\nhost_addresses = ["127.0.0.1"]\n[[webrtc.ice_servers]]\n'
                    'urls = ["turn:turn.example.com:3478"]\nusername = "u"\ncredential = "p"\n')
    servers = rtc_configuration(load_config(good).webrtc).iceServers
    assert servers is not None and servers[0].username == "u"
    bad = tmp_path / "bad.toml"
    bad.write_text('[webrtc]\nmax_calls = 4\n[[webrtc.ice_servers]]\nurls = ["http://nope"]\n')
    with pytest.raises(ConfigError) as err:
        load_config(bad)
    assert ":4:" in str(err.value) and "stun:" in str(err.value)


def frame(samples: np.ndarray, rate: int, layout: str) -> AudioFrame:
    f = AudioFrame.from_ndarray(samples.reshape(1, -1), format="s16", layout=layout)
    f.sample_rate, f.time_base = rate, Fraction(1, rate)
    return f


def test_inbound_audio_cuts_20ms_frames_after_a_prefetch_and_counts_gaps() -> None:
    fifo = InboundAudio(prefetch=2, max_frames=4)
    assert fifo.pop() is None and fifo.gaps == 1
    stereo = np.repeat(np.full(960, 1000, np.int16), 2)  # 20 ms of Opus-like 48 kHz stereo
    for _ in range(3):
        fifo.feed(frame(stereo, 48000, "stereo"))
    out = [fifo.pop() for _ in range(4)]
    got = [p for p in out if p is not None]
    assert len(got) >= 2 and all(len(p) == 640 for p in got)
    assert abs(int(np.frombuffer(got[-1], np.int16)[-1]) - 1000) < 50  # mono mix, level kept
    for _ in range(10):
        fifo.feed(frame(np.zeros(160, np.int16), 8000, "mono"))  # a codec change mid-call: 8 kHz
    assert fifo.dropped > 0  # bounded: the oldest frames go


def test_signal_request_round_trip_and_garbage() -> None:
    req = SignalRequest("POST", "/webrtc/offer", {"entry": "sales"}, '{"x": 1}', "127.0.0.1")
    assert SignalRequest.decode(req.encode()) == req
    with pytest.raises(ValueError):
        SignalRequest.decode(b"[1, 2]")


async def test_a_call_ended_before_its_data_channel_opened_still_tells_the_page() -> None:
    """Two real aiortc peers on loopback; the gateway side ends the call before the page's channel is open."""
    import asyncio

    from aiortc import RTCConfiguration, RTCPeerConnection

    from gateway.dialplan import DialplanEntry
    from gateway.webrtc.call import WebRtcCall
    from gateway.webrtc.client import loopback_only

    loopback_only()
    server, page = RTCPeerConnection(RTCConfiguration(iceServers=[])), RTCPeerConnection(RTCConfiguration(iceServers=[]))
    call = WebRtcCall("webrtc-test", DialplanEntry(name="t"), "web:127.0.0.1", pc=server, end_reason="engine lost")
    heard: list[dict[str, str]] = []
    page_channel = page.createDataChannel("control")

    @page_channel.on("message")
    def page_hears(message: str) -> None:
        heard.append(json.loads(message))
        page_channel.send(json.dumps({"type": "ended_ack"}))

    @server.on("datachannel")
    def gateway_gets(channel: object) -> None:
        call.channel = channel  # type: ignore[assignment]
        channel.on("message", lambda m: setattr(call, "ended_acked", json.loads(m)["type"] == "ended_ack"))  # type: ignore[attr-defined]

    try:
        await page.setLocalDescription(await page.createOffer())
        await server.setRemoteDescription(page.localDescription)
        await server.setLocalDescription(await server.createAnswer())
        telling = asyncio.ensure_future(call.tell_page_ended(timeout=8.0))
        await asyncio.sleep(0)
        assert call.channel is None and not telling.done()  # the call has ended; the page's channel is not up yet
        await page.setRemoteDescription(server.localDescription)
        assert await asyncio.wait_for(telling, 10) is True
        assert heard == [{"type": "ended", "reason": "engine lost"}] and call.ended_acked
    finally:
        await page.close()
        await server.close()
