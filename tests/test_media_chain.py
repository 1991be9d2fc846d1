"""The per-call media chain's stages on generated signals: AEC, resampling, Silero/energy
detection, stage timing, and CallMedia's pause-in-the-same-tick rule."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from engine import wire
from engine.session import FRAME_BYTES, FRAME_SAMPLES, AgentAudio, AudioFlags, EventKind
from gateway.bench.aec_corpus import EchoPath, EchoPathSpec, agent_turns, at_level, read_clip, to_int16
from gateway.config import MediaConfig
from gateway.dialplan import DialplanEntry
from gateway.media.aec import EchoCanceller, FrameLengthError
from gateway.media.chain import CallMedia
from gateway.media.detector import DetectorSettings, SpeechDetector
from gateway.media.inbound import InboundChain
from gateway.media.resample import FrameResampler, StreamResampler
from gateway.media.silero import SileroVad
from gateway.media.timing import STAGES, StageTimes
from gateway.media.vad import VadEdge, frame_dbfs
from tests.support.audio import xcorr


def frames_of(x: np.ndarray, n: int = FRAME_SAMPLES) -> list[np.ndarray]:
    return [x[i : i + n] for i in range(0, len(x) - n + 1, n)]


def power_db(x: np.ndarray) -> float:
    f = x.astype(np.float64) / 32768
    return float(10 * np.log10(np.mean(f * f) + 1e-20))


# -- AEC ---------------------------------------------------------------------------------------
def test_aec_removes_a_known_echo_by_at_least_30_db_after_two_seconds() -> None:
    far = np.concatenate(agent_turns()[:2])  # ~12 s of piper speech at -20 dBFS
    path = EchoPath(EchoPathSpec(120, 6, "hybrid"), 16000, FRAME_SAMPLES, far[: 8 * 16000])
    aec = EchoCanceller(16000)
    mic_tail, out_tail = [], []
    for i, f in enumerate(frames_of(to_int16(far))):
        aec.far(f.tobytes())
        mic = to_int16(path.echo(f.astype(np.float64) / 32768))
        out = np.frombuffer(aec.near(mic.tobytes()), dtype=np.int16)
        if i >= 150:  # from 3 s on (the echo starts at ~0.6 s)
            mic_tail.append(mic)
            out_tail.append(out)
    erle = power_db(np.concatenate(mic_tail)) - power_db(np.concatenate(out_tail))
    assert erle >= 30, f"echo reduced by only {erle:.1f} dB"
    assert aec.far_blocks == aec.near_blocks == 2 * (len(far) // FRAME_SAMPLES)


def test_aec_keeps_the_near_end_when_there_is_no_echo() -> None:
    caller = to_int16(at_level(read_clip("hours_f3"), -26))
    aec = EchoCanceller(16000, noise_suppression=False)
    out = []
    for f in frames_of(caller):
        aec.far(bytes(FRAME_BYTES))
        out.append(np.frombuffer(aec.near(f.tobytes()), dtype=np.int16))
    y = np.concatenate(out)
    assert abs(power_db(y) - power_db(caller[: len(y)])) < 2.0
    assert abs(xcorr(caller[: len(y)], y).peak) > 0.6  # same speech, ~8 ms later (AEC3 reshapes phase: ~0.7-0.85)


@pytest.mark.parametrize("size", [0, 2, 300, 321, 480, 642, 1000])
def test_aec_rejects_lengths_that_are_not_10_ms_multiples_with_an_exception(size: int) -> None:
    aec = EchoCanceller(16000)
    with pytest.raises(FrameLengthError):
        aec.near(bytes(size))
    with pytest.raises(FrameLengthError):
        aec.far(bytes(size))
    assert len(aec.near(bytes(960))) == 960  # still alive and working: 30 ms is fine


def test_aec_wrong_length_would_abort_the_process_without_the_guard() -> None:
    """Why the guard exists: the native module SIGABRTs on a frame that is not 10 ms. Run in
    a child process so that this test's process survives; if a future livekit stops
    aborting, the guard is merely redundant and this test says so."""
    code = textwrap.dedent(
        """
        from livekit import rtc
        apm = rtc.AudioProcessingModule(echo_cancellation=True)
        apm.process_stream(rtc.AudioFrame(bytearray(300), 16000, 1, 150))
        print("survived")
        """
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert "survived" not in proc.stdout or proc.returncode != 0, "the native module accepts 9.4 ms now"


def test_aec_one_20_ms_call_equals_two_10_ms_calls_bit_for_bit() -> None:
    """EchoCanceller hands a whole frame to livekit in one call, relying on livekit cutting it
    into AEC3's 10 ms blocks itself; if a future livekit stops doing so, this says so."""
    from livekit import rtc

    far = to_int16(np.concatenate(agent_turns()[:1])[: 3 * 16000])
    path = EchoPath(EchoPathSpec(80, 10, "hybrid"), 16000, FRAME_SAMPLES, far)
    whole = EchoCanceller(16000, noise_suppression=True)
    halves = rtc.AudioProcessingModule(echo_cancellation=True, noise_suppression=True, high_pass_filter=True)
    got, want = [], []
    for f in frames_of(far):
        mic = to_int16(path.echo(f.astype(np.float64) / 32768)).tobytes()
        whole.far(f.tobytes())
        got.append(whole.near(mic))
        out = bytearray()
        for pcm, near in ((f.tobytes(), False), (mic, True)):
            for half in (pcm[:FRAME_BYTES // 2], pcm[FRAME_BYTES // 2 :]):
                buf = bytearray(half)
                block = rtc.AudioFrame(buf, 16000, 1, FRAME_SAMPLES // 2)
                (halves.process_stream if near else halves.process_reverse_stream)(block)
                if near:
                    out += buf
        want.append(bytes(out))
    assert got == want
    assert whole.far_blocks == whole.near_blocks == 2 * len(got)


def test_aec_rejects_a_rate_it_cannot_run() -> None:
    with pytest.raises(ValueError, match="sample rate"):
        EchoCanceller(11025)


def test_aec_works_at_8_khz_too() -> None:
    aec = EchoCanceller(8000)
    assert len(aec.near(bytes(320))) == 320  # 20 ms at 8 kHz
    with pytest.raises(FrameLengthError):
        aec.near(bytes(FRAME_BYTES + 2))


# -- resampling --------------------------------------------------------------------------------
@pytest.mark.parametrize("rate", [8000, 48000])
def test_resampling_round_trip_keeps_speech_and_adds_only_a_few_ms(rate: int) -> None:
    x = to_int16(at_level(read_clip("hours_joe"), -20))
    down, up = FrameResampler(16000, rate, rate // 50), FrameResampler(rate, 16000, FRAME_SAMPLES)
    y = np.concatenate([up.process(down.process(f)) for f in frames_of(x)])
    corr = xcorr(x, y, max_lag=400)
    assert corr.peak > (0.97 if rate > 16000 else 0.85), corr
    assert 0 <= corr.lag < 16000 * 0.006, f"round trip adds {corr.lag / 16:.1f} ms"
    assert len(up.process(down.process(x[:FRAME_SAMPLES]))) == FRAME_SAMPLES


def test_streaming_resampler_equals_converting_at_once_and_rejects_bad_rates() -> None:
    x = to_int16(at_level(read_clip("person_joe"), -20))
    a, b = StreamResampler(16000, 48000), StreamResampler(16000, 48000)
    chunked = np.concatenate([a.process(f) for f in frames_of(x)])
    whole = b.process(np.concatenate(frames_of(x)))
    assert len(whole) == len(chunked)
    assert int(np.max(np.abs(chunked.astype(np.int32) - whole))) <= 1  # float summation order: 1 LSB
    with pytest.raises(ValueError):
        StreamResampler(0, 16000)
    alias = StreamResampler(16000, 8000).process(to_int16(0.3 * np.sin(2 * np.pi * 7000 * np.arange(16000) / 16000)))
    assert power_db(alias[200:]) < power_db(to_int16(np.full(10, 0.3))) - 60  # 7 kHz does not fold to 1 kHz


# -- speech detection --------------------------------------------------------------------------
def detect(frames: list[np.ndarray], det: SpeechDetector) -> list[tuple[int, VadEdge]]:
    return [(i, e) for i, f in enumerate(frames) if (e := det.update(f, i * 0.02)) is not None]


def test_silero_detects_speech_within_150_ms_and_stops_after_it() -> None:
    clip = read_clip("hours_f3")  # speech from ~0.5 s to ~2.45 s
    det = SpeechDetector(DetectorSettings(stop_ms=300))
    edges = detect(frames_of(to_int16(at_level(clip, -30))), det)
    assert [e for _, e in edges] == [VadEdge.START, VadEdge.STOP], edges
    start_s, stop_s = edges[0][0] * 0.02, edges[1][0] * 0.02
    assert 0.5 <= start_s <= 0.5 + 0.15 + 0.05, f"speech-start at {start_s:.2f} s"
    assert 2.4 <= stop_s <= 2.45 + 0.3 + 0.2
    assert det.onset_t == pytest.approx(start_s)


def test_silero_ignores_silence_and_line_noise() -> None:
    rng = np.random.default_rng(3)
    noise = to_int16(rng.standard_normal(16000 * 3) * 10 ** (-45 / 20))  # hiss well above the gate
    det = SpeechDetector(DetectorSettings())
    assert detect(frames_of(np.zeros(16000, np.int16)) + frames_of(noise), det) == []


def test_residual_echo_after_the_canceller_starts_no_speech_while_raw_echo_does() -> None:
    far = np.concatenate(agent_turns()[:2])
    path = EchoPath(EchoPathSpec(200, 6, "hybrid", seed=5), 16000, FRAME_SAMPLES, far[: 8 * 16000])
    cfg = MediaConfig()
    chain = InboundChain(cfg)
    raw = SpeechDetector(DetectorSettings())
    raw_starts = chain_starts = 0
    for i, f in enumerate(frames_of(to_int16(far))):
        chain.far(f.tobytes())
        mic = to_int16(path.echo(f.astype(np.float64) / 32768))
        raw_starts += raw.update(mic) is VadEdge.START
        chain_starts += chain.process(mic.tobytes(), i * 0.02)[1] is VadEdge.START
    assert raw_starts >= 2, "the echo is not speech-like enough for this test to mean anything"
    assert chain_starts == 0
    assert not chain.warming_up and not chain.failures


def test_silero_reset_forgets_state_and_frames_of_any_size_are_buffered() -> None:
    vad = SileroVad()
    x = to_int16(at_level(read_clip("hours_f3"), -30))
    probs = [vad.push(x[i : i + 100]) for i in range(0, 16000, 100)]
    assert sum(p is not None for p in probs) == 16000 // 512
    assert max(p for p in probs if p is not None) > 0.9
    vad.reset()
    assert vad.probability == 0.0 and vad.push(np.zeros(512, np.int16)) is not None


def test_energy_gate_and_start_floor_block_quiet_speech() -> None:
    clip = to_int16(at_level(read_clip("hours_f3"), -55))
    assert detect(frames_of(clip), SpeechDetector(DetectorSettings(threshold_dbfs=-40))) == []
    loud = to_int16(at_level(read_clip("hours_f3"), -30))
    det = SpeechDetector(DetectorSettings())
    assert all(det.update(f, 0, start_floor_dbfs=0.0) is None for f in frames_of(loud))


# -- stage timing ------------------------------------------------------------------------------
def test_stage_times_accumulate_and_sample() -> None:
    times = StageTimes(sample_every=2)
    for _ in range(4):
        times.add(STAGES.index("aec"), 1000)
        times.add(STAGES.index("inbound"), 3000)
    assert times.summary() == {"aec": 1.0, "inbound": 3.0}
    assert len(times.samples) == 4  # every 2nd frame: both stages of frames 2 and 4
    times.flush()
    assert times.samples == [] and times.summary() == {"aec": 1.0, "inbound": 3.0}


# -- CallMedia ---------------------------------------------------------------------------------
class RecordingLink:
    def __init__(self) -> None:
        self.events: list[EventKind] = []
        self.frames = 0

    def send(self, msg: bytes) -> bool:
        kind, _, *rest = wire.decode(msg)
        if kind is wire.MsgType.FRAME:
            self.frames += 1
        elif kind is wire.MsgType.EVENT:
            self.events.append(rest[0].kind)  # type: ignore[union-attr]
        return True

    def send_essential(self, msg: bytes) -> bool:
        return self.send(msg)


def test_call_media_pauses_agent_playout_in_the_tick_speech_starts() -> None:
    link = RecordingLink()
    media = CallMedia(0, link, MediaConfig(), DialplanEntry(name="t"))
    media.start()
    tone = bytes(FRAME_BYTES)
    for _ in range(400):
        media.on_audio(AgentAudio(tone, 1, AudioFlags.INTERRUPTIBLE))
    caller = frames_of(to_int16(at_level(read_clip("hours_f3"), -30)))
    paused_at = None
    for i, f in enumerate(caller):
        sent = media.outbound()
        media.inbound(f.tobytes())
        if media.playout.paused and paused_at is None:
            paused_at = i
            assert sent is not None  # this tick still played; the next one is silent
            assert media.outbound() is None
    assert paused_at is not None and media.barge_in_pauses == 1 and media.speech_starts == 1
    assert EventKind.SPEECH_START in link.events and EventKind.PLAYOUT in link.events
    assert link.frames == len(caller)
    assert media.dsp.times.frames[STAGES.index("aec_far")] > 0 and media.dsp.times.mean_us(STAGES.index("inbound")) > 0


def test_call_media_survives_frames_of_the_wrong_size() -> None:
    link = RecordingLink()
    media = CallMedia(0, link, MediaConfig(), DialplanEntry(name="t"))
    media.start()
    media.inbound(bytes(300))  # ignored, not an abort
    media.on_audio(AgentAudio(bytes(FRAME_BYTES), 1, AudioFlags.NONE))
    assert media.outbound() is not None
    media.inbound(bytes(FRAME_BYTES))
    assert media.frames_in == 1 and not media.dsp.failures
    assert frame_dbfs(np.zeros(FRAME_SAMPLES, np.int16)) < -100


@pytest.mark.parametrize(
    "line, key",
    [('noise = "loud"', "noise"), ("vad_start_ms = 30", "vad_start_ms"), ("vad_start_probability = 0.2", "vad_start_probability")],
)
def test_bad_media_config_is_refused_naming_the_key(tmp_path: Path, line: str, key: str) -> None:
    from gateway.config import load_config
    from gateway.tomlfile import ConfigError

    path = tmp_path / "talkover.toml"
    path.write_text(f"[media]\n{line}\n")
    with pytest.raises(ConfigError, match=key):
        load_config(path)


def _noise_frame(rng: np.random.Generator, dbfs: float) -> np.ndarray:
    x = rng.standard_normal(320)
    return (x / np.sqrt(np.mean(x * x)) * 32768 * 10 ** (dbfs / 20)).astype(np.int16)


def _scaled(frame: np.ndarray, db: float) -> np.ndarray:
    return (frame.astype(np.float64) * 10 ** (db / 20)).astype(np.int16)


class _Warmup:
    """An AecWarmup and the EchoBound that its chain feeds first (gateway/media/inbound.py)."""

    def __init__(self) -> None:
        from gateway.media.echo_bound import EchoBound
        from gateway.media.warmup import AecWarmup

        self.bound = EchoBound()
        self.warmup = AecWarmup(erle_db=20, margin_db=3, gate_dbfs=-50, bound=self.bound)

    @property
    def done(self) -> bool:
        return self.warmup.done

    @property
    def floor_dbfs(self) -> float:
        return self.warmup.floor_dbfs

    def far(self, frame: np.ndarray) -> None:
        self.bound.far(frame)
        self.warmup.far(frame)

    def near(self, mic: np.ndarray, out: np.ndarray, in_speech: bool) -> None:
        if not self.warmup.done:
            self.bound.near(mic)
        self.warmup.near(mic, out, in_speech)


def test_warmup_gate_holds_until_the_canceller_shows_20_db_then_lifts() -> None:

    rng = np.random.default_rng(1)
    w = _Warmup()
    sent = [_noise_frame(rng, -20.0) for _ in range(140)]
    for f in sent[:40]:
        w.far(f)
    assert w.floor_dbfs == pytest.approx(-23.0, abs=0.05)

    def tick(i: int, removed_db: float) -> None:  # the echo: this tick's frame 10 dB down
        w.far(sent[i])
        mic = _scaled(sent[i], -10)
        w.near(mic, _scaled(mic, -removed_db), in_speech=False)

    for i in range(40, 90):
        tick(i, 10)  # only 10 dB removed: still warming up
    assert not w.done and w.floor_dbfs > -30
    for i in range(90, 139):
        tick(i, 30)
    assert not w.done  # one window and a bit: not yet
    tick(139, 30)
    assert w.done and w.floor_dbfs == -120.0


def test_warmup_ends_once_every_lag_shows_the_line_brings_no_echo_back() -> None:
    """Agent audio out, line noise 50 dB below it back: the echo could come back up to 600 ms
    late, so the line is known echo-free only after every lag has seen enough agent audio."""
    from gateway.media.echo_bound import GAIN_MIN_SAMPLES, LAGS

    rng = np.random.default_rng(2)
    w = _Warmup()
    ended = None
    for i in range(200):
        w.far(_noise_frame(rng, -20.0))
        w.near(_noise_frame(rng, -70.0), _noise_frame(rng, -80.0), in_speech=False)
        if w.done:
            ended = i
            break
    assert ended is not None and LAGS + GAIN_MIN_SAMPLES - 1 <= ended < LAGS + 2 * GAIN_MIN_SAMPLES
    assert w.bound.echo_free


def test_echo_bound_learns_the_echo_path_gain_and_keeps_an_echoing_line_cancelled() -> None:
    from gateway.media.echo_bound import EchoBound

    rng = np.random.default_rng(4)
    b = EchoBound()
    sent = [_noise_frame(rng, float(rng.uniform(-40, -20))) for _ in range(150)]  # syllable-like levels
    for i, f in enumerate(sent):  # echo 200 ms late at ERL 12 dB, line noise 40 dB below it
        b.far(f)
        echo = _scaled(sent[i - 10], -12).astype(np.int32) if i >= 10 else np.zeros(320, np.int32)
        b.near(np.clip(echo + _noise_frame(rng, -72.0), -32768, 32767).astype(np.int16))
    gains_db = 10 * np.log10(b.gains)
    assert not b.echo_free
    assert -12 - 3 <= gains_db[10] <= -12 + 10 + 3  # the true lag: the path's gain plus the margin
    assert gains_db[10] == gains_db.max()


def test_warmup_lets_a_caller_through_whom_no_echo_of_the_greeting_explains() -> None:
    """A melody greeting (one tone) on an echo-free line, the caller speaking 15 dB below it:
    no gate. Its own echo (delayed 120 ms, 6 dB down, broadband agent audio) keeps the gate."""

    rng = np.random.default_rng(3)
    tone = (32768 * 10 ** (-17 / 20) * np.sin(2 * np.pi * 440 * np.arange(320) / 16000)).astype(np.int16)
    w = _Warmup()
    for _ in range(40):
        w.far(tone)
        w.near(np.zeros(320, np.int16), np.zeros(320, np.int16), in_speech=False)
    for _ in range(3):
        w.far(tone)
        caller = _noise_frame(rng, -35.0)
        w.near(caller, caller, in_speech=False)
    assert w.floor_dbfs == -120.0 and not w.done

    echoing = _Warmup()
    sent = [_noise_frame(rng, -20.0) for _ in range(80)]
    floors = []
    for i, f in enumerate(sent):
        echoing.far(f)
        mic = _scaled(sent[i - 6], -6) if i >= 6 else np.zeros(320, np.int16)
        echoing.near(mic, mic, in_speech=False)
        floors.append(echoing.floor_dbfs)
    assert min(floors[10:]) > -30  # the echo never opened the gate


def test_an_echo_that_appears_on_an_echo_free_line_brings_the_canceller_back() -> None:
    """Agent speech-like audio (levels rising and falling per frame) on a line with no echo,
    then the far phone starts echoing it (80 ms, ERL 10 dB): the chain leaves echo-free mode
    within half a second and warms up again, without the echo ever starting speech."""
    from gateway.config import MediaConfig
    from gateway.media.inbound import InboundChain

    rng = np.random.default_rng(6)
    chain = InboundChain(MediaConfig(vad="energy"))
    sent = [_noise_frame(rng, float(rng.uniform(-40, -18))) for _ in range(400)]
    free_at = back_at = None
    rewarmed = False
    for i, f in enumerate(sent):
        chain.far(f.tobytes())
        echo = _scaled(sent[i - 4], -10).astype(np.int32) if i >= 200 else np.zeros(320, np.int32)
        heard = np.clip(echo + _noise_frame(rng, -70.0), -32768, 32767).astype(np.int16)
        _, edge = chain.process(heard.tobytes(), i * 0.02)
        assert edge is None, f"the echo started speech at frame {i}"
        if free_at is None and chain.echo.echo_free:
            free_at = i
        if free_at is not None and back_at is None and not chain.echo.echo_free:
            back_at, rewarmed = i, chain.warming_up
    assert free_at is not None and free_at < 100
    assert back_at is not None and 200 < back_at < 225 and rewarmed


def test_an_echo_free_line_leaves_aec3_out_and_keeps_the_caller_whole() -> None:
    """Once the line is known to bring none of the agent's audio back, AEC3 gets no frames
    (a module with only noise suppression and the high-pass filter takes them) and a caller
    talking over the agent comes through at full level; an echo brings AEC3 back."""
    rng = np.random.default_rng(7)
    chain = InboundChain(MediaConfig(vad="energy"))
    assert chain.aec is not None
    caller = at_level(read_clip("hours_f3"), -26.0)
    caller_frames = [to_int16(caller[i : i + 320]) for i in range(0, len(caller) - 320, 320)]
    sent = [_noise_frame(rng, float(rng.uniform(-40, -18))) for _ in range(150 + len(caller_frames) + 100)]
    blocks_when_free = None
    kept_in, kept_out = [], []
    for i, f in enumerate(sent):
        chain.far(f.tobytes())
        heard = _noise_frame(rng, -70.0).astype(np.int32)
        talking = 150 <= i < 150 + len(caller_frames)
        if talking:
            heard += caller_frames[i - 150]
        if i >= 150 + len(caller_frames):
            heard += _scaled(sent[i - 4], -10)  # the far phone starts echoing
        heard16 = np.clip(heard, -32768, 32767).astype(np.int16)
        out, _ = chain.process(heard16.tobytes(), i * 0.02)
        if i == 150:
            assert chain.echo.echo_free
            blocks_when_free = chain.aec.near_blocks
        if talking and i >= 160:
            kept_in.append(np.mean(heard16.astype(np.float64) ** 2))
            kept_out.append(np.mean(np.frombuffer(out, np.int16).astype(np.float64) ** 2))
    assert blocks_when_free is not None and chain.without_echo is not None
    kept_db = 10 * np.log10(sum(kept_out) / sum(kept_in))
    assert abs(kept_db) < 2.0, f"caller level changed by {kept_db:.1f} dB over an echo-free line"
    assert not chain.echo.echo_free and chain.warming_up
    assert chain.aec.near_blocks > blocks_when_free  # AEC3 is back for the echo ...
    assert chain.aec.near_blocks - blocks_when_free < 2 * 100  # ... and had nothing while the line was free


def test_on_an_echo_free_line_the_start_gate_follows_the_agent_and_a_soft_caller_starts() -> None:
    """The start floor on an echo-free line stands for what an echo of the agent could be: it
    holds while agent audio is within the echo's reach and is gone once the agent has been
    silent for that long — then a caller well below the agent's level starts speech at once
    (the echo bound no longer judging those frames: no agent audio can be in them)."""
    rng = np.random.default_rng(8)
    chain = InboundChain(MediaConfig(vad="energy"))
    for i in range(150):  # the agent talks over a line that brings nothing back
        chain.far(_noise_frame(rng, float(rng.uniform(-40, -18))).tobytes())
        chain.process(_noise_frame(rng, -70.0).tobytes(), i * 0.02)
    assert chain.echo.echo_free and not chain.warming_up
    assert chain.warmup.floor_dbfs > -30.0  # while the agent talks: what its echo could be
    for i in range(60):  # the agent falls silent
        chain.far(bytes(640))
        chain.process(_noise_frame(rng, -70.0).tobytes(), (150 + i) * 0.02)
    assert not chain.echo.agent_in_reach
    assert chain.warmup.floor_dbfs < -50.0, "the agent is silent: no floor above the energy gate"
    edges = []
    for i in range(10):  # a soft caller, 25 dB below the agent
        chain.far(bytes(640))
        _, edge = chain.process(_noise_frame(rng, -45.0).tobytes(), (210 + i) * 0.02)
        edges.append(edge)
    assert VadEdge.START in edges[:5], edges
