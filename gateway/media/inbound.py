"""The DSP half of one call's media chain, at 16 kHz in 20 ms frames, on the clock thread.

    far(frame sent)      → AEC reference
    process(frame heard) → AEC → noise suppression → speech detector → (clean frame, edge)

Until the canceller has shown that it removes the echo, speech-start needs a louder frame
(gateway/media/warmup.py): the agent's greeting meets an unconverged canceller. On a line
that brings none of the agent's audio back (gateway/media/echo_bound.py; most carrier trunks
cancel the echo in the network, WebRTC phones cancel their own) AEC3 is left out: it has
nothing to cancel, its suppressor would otherwise mute the caller whenever the agent talks,
and it is the chain's most expensive stage. A module with the same noise suppression and
high-pass filter but no canceller takes its place (~33 instead of ~135 µs a frame). If an
echo appears later, AEC3 takes the frames again and the warm-up gate starts over.

Nothing here may take the call down: a stage that raises (a native library refusing input,
the VAD model failing) is logged once and switched off, and the frame passes through
(without AEC the chain still works, it just hears more echo). Each stage's time goes into
`times` (see gateway/media/timing.py).
"""

from __future__ import annotations


import numpy as np

from engine.logs import get_logger
from engine.session import FRAME_BYTES, SAMPLE_RATE
from gateway.config import MediaConfig
from gateway.media import timing
from gateway.media.aec import EchoCanceller
from gateway.media.detector import DetectorSettings, SpeechDetector
from gateway.media.echo_bound import EchoBound
from gateway.media.noise import NoiseGain
from gateway.media.vad import EnergyVad, VadEdge
from gateway.media.warmup import AecWarmup

SILENCE = bytes(FRAME_BYTES)
_clock = timing.stage_clock


def detector_settings(cfg: MediaConfig, threshold_dbfs: float = 0.0) -> DetectorSettings:
    return DetectorSettings(
        threshold_dbfs=threshold_dbfs or cfg.vad_threshold_dbfs,
        start_probability=cfg.vad_start_probability,
        stop_probability=cfg.vad_stop_probability,
        start_ms=cfg.vad_start_ms,
        stop_ms=cfg.vad_stop_ms,
    )


class InboundChain:
    def __init__(self, cfg: MediaConfig, threshold_dbfs: float = 0.0, call_id: str = "") -> None:
        """`threshold_dbfs`: the dialplan entry's energy gate (0 = the media config's)."""
        self._log = get_logger(call_id=call_id) if call_id else get_logger()
        self.aec: EchoCanceller | None = None
        self.echo = EchoBound()
        self._apm_options = dict(
            noise_suppression=cfg.noise == "apm",
            auto_gain=cfg.noise == "apm" and cfg.auto_gain_dbfs > 0,
            high_pass=cfg.aec_high_pass,
        )
        if cfg.aec:
            self.aec = EchoCanceller(SAMPLE_RATE, **self._apm_options)
        self.without_echo: EchoCanceller | None = None  # made on the first echo-free stretch
        self._skip_echo_free = cfg.aec_skip_echo_free
        self.noise: NoiseGain | None = None
        if cfg.noise == "webrtc" or (cfg.noise == "apm" and not cfg.aec):
            self.noise = NoiseGain(2, cfg.auto_gain_dbfs)
        settings = detector_settings(cfg, threshold_dbfs)
        self.detector: SpeechDetector | EnergyVad
        if cfg.vad == "silero":
            self.detector = SpeechDetector(settings)
        else:
            self.detector = EnergyVad(settings.threshold_dbfs, settings.start_ms, settings.stop_ms)
        self.times = timing.StageTimes(cfg.stage_timing_sample)
        self._pending = False  # a frame's detector waits for its batch
        self._edge: VadEdge | None = None
        self._t0 = self._t_vad = self._vad_ns = 0  # stage_clock ns
        self.failures: list[str] = []
        self.warmup = AecWarmup(
            cfg.aec_warmup_erle_db,
            cfg.aec_warmup_margin_db,
            settings.threshold_dbfs,
            self.echo,
            enabled=self.aec is not None,
        )

    @property
    def waits_for_batch(self) -> bool:
        return self._pending

    @property
    def warming_up(self) -> bool:
        return not self.warmup.done

    def far(self, pcm: bytes | None) -> None:
        """The frame just handed to the sender (None = the silence sent instead)."""
        if self.aec is None:
            return
        t0 = _clock()
        frame = np.frombuffer(SILENCE if pcm is None else pcm, dtype=np.int16)
        self.echo.far(frame)
        if not self.warmup.done:
            self.warmup.far(frame)
        if self.echo.echo_free and self._skip_echo_free:
            self.times.add(timing.AEC_FAR, _clock() - t0)
            return
        try:
            self.aec.far(SILENCE if pcm is None or self.echo.echo_free else pcm)
        except Exception as exc:  # noqa: BLE001 - a native stage must never stop the clock thread
            self._disable("aec", exc)
        self.times.add(timing.AEC_FAR, _clock() - t0)

    def begin(self, pcm: bytes, t: float) -> bytes:
        """AEC → noise suppression → the speech detector's first half; `finish()` gives the edge."""
        t0 = _clock()
        out = pcm
        if self.aec is not None:
            try:
                was_free = self.echo.echo_free
                # An echo-free line is watched for an echo appearing — only while the agent's
                # audio is within reach; otherwise nothing heard can be its echo (and the start
                # gate is open: warmup.floor_dbfs).
                judge = not self.warmup.done or (was_free and self.echo.agent_in_reach)
                self.echo.near(np.frombuffer(pcm, dtype=np.int16), judge=judge)
                if was_free != self.echo.echo_free:
                    self._echo_changed(was_free)
                if self.echo.echo_free and self._skip_echo_free:
                    out = self._without_echo().near(pcm)
                else:
                    out = self.aec.near(pcm)
            except Exception as exc:  # noqa: BLE001
                self._disable("aec", exc)
            t1 = _clock()
            self.times.add(timing.AEC, t1 - t0)
        else:
            t1 = t0
        if self.noise is not None:
            try:
                out = self.noise.process(out)
            except Exception as exc:  # noqa: BLE001
                self._disable("noise", exc)
            t2 = _clock()
            self.times.add(timing.NS, t2 - t1)
        else:
            t2 = t1
        if not self.warmup.done:
            self.warmup.near(np.frombuffer(pcm, dtype=np.int16), np.frombuffer(out, dtype=np.int16), self.detector.in_speech)
        self._t0, self._t_vad = t0, t2
        self._pending = self._hear(np.frombuffer(out, dtype=np.int16), t)
        return out

    def _hear(self, frame: np.ndarray, t: float) -> bool:
        """True: the speech detector waits for its batch (finish() after SileroBatch.end_tick)."""
        floor = self.warmup.floor_dbfs
        if isinstance(self.detector, SpeechDetector) and self.detector.silero.batch is not None:
            try:
                self.detector.hear(frame, t, floor)
                self._vad_ns = _clock() - self._t_vad
                return True
            except Exception as exc:  # noqa: BLE001
                self._disable("vad", exc)
        try:
            self._edge = self.detector.update(frame, t, floor)
        except Exception as exc:  # noqa: BLE001
            self._disable("vad", exc)
            self._edge = None
        self._vad_ns = _clock() - self._t_vad
        return False

    def want_peek(self) -> None:
        """Between the batch's chunks and its peeks: queue this frame's peek if it needs one."""
        det = self.detector
        if self._pending and isinstance(det, SpeechDetector) and det.silero.batch is not None and det.needs_peek():
            det.silero.batch.add_peek(det.silero, det.silero.peek_window())  # type: ignore[arg-type]

    def finish(self, batch_share_ns: int = 0) -> VadEdge | None:
        """The frame's speech edge, once its batch (if any) has run; stage times recorded."""
        t0 = _clock()
        if self._pending:
            self._pending = False
            det = self.detector
            batch = det.silero.batch if isinstance(det, SpeechDetector) else None
            try:
                if batch is not None and batch.failure is not None:
                    raise batch.failure
                self._edge = det.decide(batch.peeked.get(id(det.silero)) if batch is not None else None)  # type: ignore[union-attr]
            except Exception as exc:  # noqa: BLE001
                self._disable("vad", exc)
                self._edge = None
            self._vad_ns += _clock() - t0 + batch_share_ns
        self.times.add(timing.VAD, self._vad_ns)
        self.times.add(timing.INBOUND, self._t_vad - self._t0 + self._vad_ns)
        edge, self._edge = self._edge, None
        return edge

    def process(self, pcm: bytes, t: float) -> tuple[bytes, VadEdge | None]:
        """The whole chain for one frame (a batched detector's batch runs for this frame alone)."""
        out = self.begin(pcm, t)
        if self._pending:
            batch = self.detector.silero.batch  # type: ignore[union-attr]
            batch.run_chunks()
            self.want_peek()
            batch.run_peeks()
        return out, self.finish()

    def _without_echo(self) -> EchoCanceller:
        if self.without_echo is None:
            self.without_echo = EchoCanceller(SAMPLE_RATE, cancel_echo=False, **self._apm_options)
        return self.without_echo

    def _echo_changed(self, was_free: bool) -> None:
        if was_free:
            self.warmup.restart()
            self._log.info("echo appeared on the line: the canceller is back")
        else:
            self.warmup.done = True
            self._log.info("no echo on the line: the canceller is left out" if self._skip_echo_free
                           else "no echo on the line: the canceller gets silence as its reference")

    def _disable(self, stage: str, exc: Exception) -> None:
        self.failures.append(stage)
        self._log.error("media stage failed: switched off for this call", stage=stage, error=str(exc))
        if stage == "aec":
            self.aec = None
            self.warmup.done = True
        elif stage == "noise":
            self.noise = None
        else:
            old = self.detector
            self.detector = EnergyVad(-38.0, 60, 500)
            self.detector.in_speech = old.in_speech
