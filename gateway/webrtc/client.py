"""A scriptable WebRTC caller on aiortc, for tests and `talkover bench webrtc`: posts an
offer to the gateway, plays 16 kHz audio into the call, records what it hears (16 kHz mono),
holds and resumes by renegotiating, sends DTMF on the data channel, hangs up."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.error
import urllib.request
from typing import Any, Callable

import numpy as np
from aiortc import RTCConfiguration, RTCPeerConnection, RTCRtpSender, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from av import AudioFrame

from engine.session import FRAME_SAMPLES, SAMPLE_RATE
from gateway.config import WebRtcConfig
from gateway.webrtc.audio import TIME_BASE, InboundAudio
from gateway.webrtc.ice import apply_ice_policy

TICK_S = FRAME_SAMPLES / SAMPLE_RATE


class SignalError(RuntimeError):
    def __init__(self, status: int, body: dict[str, Any]) -> None:
        super().__init__(f"HTTP {status}: {body.get('error', body)}")
        self.status, self.body = status, body


def post(url: str, body: dict[str, Any] | None = None, timeout: float = 20) -> dict[str, Any]:
    data = json.dumps(body or {}).encode()
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"}, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return dict(json.loads(r.read()))
    except urllib.error.HTTPError as e:
        raw = e.read()
        raise SignalError(e.code, json.loads(raw) if raw.startswith(b"{") else {"error": raw.decode()}) from None


class CallerTrack(MediaStreamTrack):
    """The caller's microphone: queued 16 kHz samples, then silence, one frame per 20 ms."""

    kind = "audio"

    def __init__(self) -> None:
        super().__init__()
        self._pending = np.zeros(0, np.int16)
        self._loop: np.ndarray | None = None
        self._start = 0.0
        self._pts = 0

    def play(self, samples: np.ndarray) -> float:
        """Queues samples; returns how long until they have all been sent (s)."""
        self._pending = np.concatenate([self._pending, samples.astype(np.int16)])
        return self._pending.size / SAMPLE_RATE

    def loop(self, samples: np.ndarray) -> None:
        """Plays `samples` over and over (load tests)."""
        self._loop = samples.astype(np.int16)

    @property
    def playing(self) -> bool:
        return self._pending.size > 0

    async def recv(self) -> AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        if not self._start:
            self._start = time.monotonic()
        wait = self._start + self._pts / SAMPLE_RATE - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)
        if self._pending.size < FRAME_SAMPLES and self._loop is not None:
            self._pending = np.concatenate([self._pending, self._loop])
        chunk, self._pending = self._pending[:FRAME_SAMPLES], self._pending[FRAME_SAMPLES:]
        pcm = np.zeros(FRAME_SAMPLES, np.int16)
        pcm[: chunk.size] = chunk
        frame = AudioFrame(format="s16", layout="mono", samples=FRAME_SAMPLES)
        frame.planes[0].update(pcm.tobytes())
        frame.sample_rate, frame.pts, frame.time_base = SAMPLE_RATE, self._pts, TIME_BASE
        self._pts += FRAME_SAMPLES
        return frame


def loopback_only() -> None:
    """ICE host candidates on 127.0.0.1 only, in this process (tests and benches)."""
    apply_ice_policy(WebRtcConfig(host_addresses=["127.0.0.1"]))


class WebCaller:
    def __init__(self, base_url: str, entry: str = "", codec: str = "", keep_audio: bool = True) -> None:
        self.base_url, self.entry, self.codec, self.keep_audio = base_url.rstrip("/"), entry, codec, keep_audio
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.mic = CallerTrack()
        self.transceiver = self.pc.addTransceiver(self.mic, direction="sendrecv")
        if codec:
            caps = RTCRtpSender.getCapabilities("audio").codecs
            self.transceiver.setCodecPreferences([c for c in caps if c.mimeType.lower() == f"audio/{codec.lower()}"])
        self.channel = self.pc.createDataChannel("control")
        self.channel.on("message", self._on_message)
        self.call_id = ""
        self.ack_ended = True  # answer the gateway's "ended" with "ended_ack", as the page does
        self.messages: list[dict[str, Any]] = []
        self.heard: list[np.ndarray] = []  # 16 kHz mono 20 ms frames, in arrival order (if keep_audio)
        self.frames_heard = 0
        self.first_audio_at = 0.0  # monotonic time of the first non-silent frame
        self.offered_at = 0.0
        self._reader: asyncio.Task[None] | None = None
        self.pc.on("track", self._on_track)
        self.poster: Callable[[str, dict[str, Any], float], dict[str, Any]] = post  # HTTP POST of signalling

    # -- signalling ---------------------------------------------------------------------------
    async def call(self, timeout: float = 20) -> dict[str, Any]:
        self.offered_at = time.monotonic()
        await self.pc.setLocalDescription(await self.pc.createOffer())  # gathers every candidate
        query = f"?entry={self.entry}" if self.entry else ""
        body = {"type": "offer", "sdp": self.pc.localDescription.sdp}
        answer = await asyncio.to_thread(self.poster, f"{self.base_url}/webrtc/offer{query}", body, timeout)
        self.call_id = str(answer["call_id"])
        await self.pc.setRemoteDescription(RTCSessionDescription(answer["sdp"], "answer"))
        return answer

    async def renegotiate(self, direction: str) -> dict[str, Any]:
        self.transceiver.direction = direction
        await self.pc.setLocalDescription(await self.pc.createOffer())
        body = {"type": "offer", "sdp": self.pc.localDescription.sdp}
        answer = await asyncio.to_thread(self.poster, f"{self.base_url}/webrtc/calls/{self.call_id}/offer", body, 20)
        await self.pc.setRemoteDescription(RTCSessionDescription(answer["sdp"], "answer"))
        return answer

    async def hold(self, mode: str = "sendonly") -> dict[str, Any]:
        return await self.renegotiate(mode)

    async def resume(self) -> dict[str, Any]:
        return await self.renegotiate("sendrecv")

    def dtmf(self, digit: str, duration_ms: int = 120) -> None:
        self.channel.send(json.dumps({"type": "dtmf", "digit": digit, "duration_ms": duration_ms}))

    async def hangup(self) -> None:
        if self.channel.readyState == "open":
            self.channel.send(json.dumps({"type": "hangup"}))
        await self.close()

    async def close(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
        await self.pc.close()

    # -- observations ---------------------------------------------------------------------------
    async def wait_connected(self, timeout: float = 10) -> None:
        deadline = time.monotonic() + timeout
        while self.pc.connectionState != "connected" or self.channel.readyState != "open":
            if self.pc.connectionState in ("failed", "closed") or time.monotonic() > deadline:
                raise TimeoutError(f"not connected: {self.pc.connectionState}, channel {self.channel.readyState}")
            await asyncio.sleep(0.02)

    def mark(self) -> int:
        """A position in the message log: wait_message(since=mark()) sees only later ones."""
        return len(self.messages)

    async def wait_message(self, timeout: float = 10, since: int = 0, **match: Any) -> int:
        """Waits for a data-channel message matching `match` after position `since`; returns the
        position just after it (to chain waits: speaking, then listening)."""
        deadline = time.monotonic() + timeout
        while True:
            for i, m in enumerate(self.messages[since:], since):
                if all(m.get(k) == v for k, v in match.items()):
                    return i + 1
            if time.monotonic() > deadline:
                raise TimeoutError(f"no data-channel message {match}; got {self.messages[-5:]}")
            await asyncio.sleep(0.02)

    @property
    def state(self) -> str:
        states = [m["state"] for m in self.messages if m.get("type") == "state"]
        return states[-1] if states else ""

    def audio(self) -> np.ndarray:
        return np.concatenate(self.heard) if self.heard else np.zeros(0, np.int16)

    def _on_message(self, message: object) -> None:
        if isinstance(message, str):
            body = json.loads(message)
            self.messages.append(body)
            if body.get("type") == "ended" and self.ack_ended and self.channel.readyState == "open":
                self.channel.send(json.dumps({"type": "ended_ack"}))

    def _on_track(self, track: MediaStreamTrack) -> None:
        if track.kind == "audio" and self._reader is None:
            self._reader = asyncio.ensure_future(self._read(track))

    async def _read(self, track: MediaStreamTrack) -> None:
        sink = InboundAudio(prefetch=1, max_frames=1 << 30)
        try:
            while True:
                sink.feed(await track.recv())  # type: ignore[arg-type]
                while (pcm := sink.pop()) is not None:
                    frame = np.frombuffer(pcm, np.int16)
                    if not self.first_audio_at and np.abs(frame).max() > 300:
                        self.first_audio_at = time.monotonic()
                    self.frames_heard += 1
                    if self.keep_audio:
                        self.heard.append(frame)
        except MediaStreamError:
            pass


async def _hold_line(url: str, entry: str, seconds: float) -> None:
    caller = WebCaller(url, entry)
    await caller.call()
    await caller.wait_connected()
    print(json.dumps({"call_id": caller.call_id}), flush=True)
    await asyncio.sleep(seconds)
    await caller.hangup()


def main(argv: list[str] | None = None) -> int:
    """`python -m gateway.webrtc.client URL [--entry NAME] [--seconds S]`: places one call
    (ICE on loopback), prints its call_id as JSON, stays on the line, hangs up."""
    import argparse

    ap = argparse.ArgumentParser(prog="talkover-webcaller")
    ap.add_argument("url")
    ap.add_argument("--entry", default="")
    ap.add_argument("--seconds", type=float, default=60.0)
    args = ap.parse_args(argv)
    loopback_only()
    asyncio.run(_hold_line(args.url, args.entry, args.seconds))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
