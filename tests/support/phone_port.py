"""Audio port for the test phone: playback, recording, line-echo simulation, stats.

The pjsua2 callbacks here run on the conference bridge clock thread. They never call
pjsua2 API functions (only read/write the frame struct), and share state with the
main thread under a plain threading.Lock.
"""

from __future__ import annotations

import ctypes
import threading
from collections import deque
from collections.abc import Callable

import numpy as np
import numpy.typing as npt
import pjsua2 as pj

RATE = 16000
FRAME_SAMPLES = 320  # 20 ms at 16 kHz
FRAME_BYTES = FRAME_SAMPLES * 2
_SILENCE = np.zeros(FRAME_SAMPLES, dtype=np.float32)
_RMS_WINDOW_FRAMES = 10  # "recent" rx level covers the last 200 ms


def _vector_data_ptr(vec: pj.ByteVector) -> int:
    # The first word of a std::vector (libstdc++) is its begin pointer; this avoids the
    # per-byte SWIG conversion that bytes(frame.buf) / ByteVector(bytes) cost.
    return int(ctypes.c_void_p.from_address(int(vec.this)).value or 0)


def read_frame(frame: pj.MediaFrame) -> bytes:
    size = int(frame.size)
    if size <= 0:
        return b""
    return ctypes.string_at(_vector_data_ptr(frame.buf), size)


def write_frame(frame: pj.MediaFrame, data: bytes) -> None:
    buf = frame.buf
    buf.resize(len(data))
    ctypes.memmove(_vector_data_ptr(buf), data, len(data))
    frame.size = len(data)
    frame.type = pj.PJMEDIA_FRAME_TYPE_AUDIO


class PhonePort(pj.AudioMediaPort):
    """One bidirectional 16 kHz mono bridge port, created once and reused across calls."""

    def __init__(self, on_play_done: Callable[[], None]) -> None:
        super().__init__()
        self._lock = threading.Lock()
        self._on_play_done = on_play_done
        self._play: npt.NDArray[np.float32] | None = None
        self._play_pos = 0
        self._play_loop = False
        self._echo_gain = 0.0
        self._echo_fifo: npt.NDArray[np.float32] | None = None
        self._recording: list[bytes] | None = None
        self.rx_frames = 0
        self.rx_audio_frames = 0  # frames that carried a non-empty audio payload
        self.tx_frames = 0
        self._rx_energy_total = 0.0
        self._rx_recent: deque[float] = deque(maxlen=_RMS_WINDOW_FRAMES)

    def create(self) -> None:
        fmt = pj.MediaFormatAudio()
        fmt.type = pj.PJMEDIA_TYPE_AUDIO
        fmt.clockRate = RATE
        fmt.channelCount = 1
        fmt.bitsPerSample = 16
        fmt.frameTimeUsec = 20000
        self.createPort("testphone", fmt)

    # ---- control (main thread) ----

    def play(self, samples: npt.NDArray[np.int16], loop: bool) -> None:
        with self._lock:
            self._play = samples.astype(np.float32)
            self._play_pos = 0
            self._play_loop = loop

    def stop_play(self) -> bool:
        with self._lock:
            was_playing = self._play is not None
            self._play = None
            return was_playing

    def set_echo(self, delay_ms: float, gain_db: float) -> None:
        delay = round(delay_ms * RATE / 1000.0)
        with self._lock:
            self._echo_gain = float(10.0 ** (gain_db / 20.0))
            self._echo_fifo = np.zeros(delay, dtype=np.float32)

    def stop_echo(self) -> None:
        with self._lock:
            self._echo_fifo = None

    def record_start(self) -> None:
        with self._lock:
            self._recording = []

    def record_stop(self) -> bytes | None:
        with self._lock:
            chunks, self._recording = self._recording, None
        return None if chunks is None else b"".join(chunks)

    def stats(self) -> dict[str, float | int | bool]:
        with self._lock:
            recent = list(self._rx_recent)
            total_frames = self.rx_frames
            total_energy = self._rx_energy_total
            out: dict[str, float | int | bool] = {
                "rx_frames": self.rx_frames,
                "rx_audio_frames": self.rx_audio_frames,
                "tx_frames": self.tx_frames,
                "playing": self._play is not None,
                "recording": self._recording is not None,
                "echo": self._echo_fifo is not None,
            }
        mean_recent = float(np.mean(recent)) if recent else 0.0
        mean_total = total_energy / total_frames if total_frames else 0.0
        out["rx_rms"] = float(np.sqrt(mean_recent))
        out["rx_rms_dbfs"] = float(20 * np.log10(max(np.sqrt(mean_recent), 1e-6)))
        out["rx_rms_total_dbfs"] = float(20 * np.log10(max(np.sqrt(mean_total), 1e-6)))
        return out

    # ---- bridge callbacks (clock thread) ----

    def onFrameReceived(self, frame: pj.MediaFrame) -> None:
        data = read_frame(frame) if frame.type == pj.PJMEDIA_FRAME_TYPE_AUDIO else b""
        has_audio = len(data) == FRAME_BYTES
        if not has_audio:
            data = bytes(FRAME_BYTES)  # keep recordings aligned to the bridge clock
        samples = np.frombuffer(data, dtype="<i2").astype(np.float32)
        energy = float(np.mean((samples / 32768.0) ** 2))
        with self._lock:
            self.rx_frames += 1
            self.rx_audio_frames += int(has_audio)
            self._rx_energy_total += energy
            self._rx_recent.append(energy)
            if self._recording is not None:
                self._recording.append(data)
            if self._echo_fifo is not None:
                self._echo_fifo = np.concatenate([self._echo_fifo, samples])

    def onFrameRequested(self, frame: pj.MediaFrame) -> None:
        finished = False
        with self._lock:
            out = _SILENCE.copy()
            if self._play is not None:
                finished = self._mix_play(out)
            if self._echo_fifo is not None and len(self._echo_fifo) >= FRAME_SAMPLES:
                out += self._echo_gain * self._echo_fifo[:FRAME_SAMPLES]
                self._echo_fifo = self._echo_fifo[FRAME_SAMPLES:]
            self.tx_frames += 1
        pcm = np.clip(np.round(out), -32768, 32767).astype("<i2").tobytes()
        write_frame(frame, pcm)
        if finished:
            self._on_play_done()

    def _mix_play(self, out: npt.NDArray[np.float32]) -> bool:
        """Add the next frame of playback into `out`; True when a one-shot play just ended."""
        assert self._play is not None
        filled = 0
        while filled < FRAME_SAMPLES:
            chunk = self._play[self._play_pos : self._play_pos + FRAME_SAMPLES - filled]
            out[filled : filled + len(chunk)] += chunk
            filled += len(chunk)
            self._play_pos += len(chunk)
            if self._play_pos >= len(self._play):
                if not self._play_loop or len(self._play) == 0:
                    self._play = None
                    return True
                self._play_pos = 0
        return False
