"""Silero batched over a worker's calls (gateway/media/vad_batch.py): the same decisions in the
same tick as each call running its own detector, and nothing lost when the tick's end is missed."""

from __future__ import annotations

import numpy as np

from engine.session import FRAME_BYTES, AgentAudio, AudioFlags, EventKind
from gateway.bench.aec_corpus import at_level, read_clip, to_int16
from gateway.config import MediaConfig
from gateway.dialplan import DialplanEntry
from gateway.media.chain import CallMedia
from gateway.media.silero import SileroVad
from gateway.media.timing import STAGES
from gateway.media.vad_batch import SileroBatch
from tests.test_media_chain import RecordingLink, frames_of

CLIPS = ("hours_f3", "hours_f3", "hours_f3")


def _callers() -> list[list[bytes]]:
    """Three callers: speech at two levels and a late start, so onsets fall in different ticks."""
    speech = to_int16(at_level(read_clip(CLIPS[0]), -30))
    quiet = to_int16(at_level(read_clip(CLIPS[1]), -38))
    late = np.concatenate([np.zeros(7 * 320 + 100, np.int16), to_int16(at_level(read_clip(CLIPS[2]), -26))])
    n = min(len(speech), len(quiet), len(late)) // 320
    return [[f.tobytes() for f in frames_of(x)[:n]] for x in (speech, quiet, late)]


def _calls(batch: SileroBatch | None) -> tuple[list[CallMedia], list[RecordingLink]]:
    links = [RecordingLink() for _ in range(3)]
    calls = [CallMedia(k, link, MediaConfig(), DialplanEntry(name="t"), f"c{k}", batch) for k, link in enumerate(links)]
    for media in calls:
        media.start()
        for _ in range(300):  # agent audio playing: a speech-start pauses it (barge-in)
            media.on_audio(AgentAudio(bytes(FRAME_BYTES), 1, AudioFlags.INTERRUPTIBLE))
    return calls, links


def _run(batch: SileroBatch | None) -> tuple[list[list[tuple[int, bool, float]]], list[RecordingLink], list[CallMedia]]:
    """Per call, per tick: (speech starts so far, paused, Silero probability)."""
    callers = _callers()
    calls, links = _calls(batch)
    trace: list[list[tuple[int, bool, float]]] = [[] for _ in calls]
    for tick in range(len(callers[0])):
        for media in calls:
            media.outbound()
        for media, frames in zip(calls, callers):
            media.inbound(frames[tick])
        if batch is not None:
            batch.end_tick()
        for k, media in enumerate(calls):
            trace[k].append((media.speech_starts, media.playout.paused, media.dsp.detector.probability))
    return trace, links, calls


def test_a_batched_tick_decides_what_each_call_alone_decides_in_the_same_tick() -> None:
    alone, alone_links, _ = _run(None)
    batch = SileroBatch()
    batched, batched_links, calls = _run(batch)
    for k in range(3):
        assert [t[:2] for t in batched[k]] == [t[:2] for t in alone[k]], f"call {k}: edges or pauses differ"
        assert np.allclose([t[2] for t in batched[k]], [t[2] for t in alone[k]], atol=1e-4)
        assert batched_links[k].events == alone_links[k].events
        assert batched_links[k].frames == alone_links[k].frames == len(batched[k])
    assert all(trace[-1][0] >= 1 and any(t[1] for t in trace) for trace in batched)  # each caller barged in
    assert batch.runs >= len(batched[0]) * 16 // 25  # a chunk every 32 ms of 20 ms ticks, all calls in one run
    assert batch.rows >= 3 * batch.runs // 2 and batch.late_runs == 0
    vad_ns = sum(media.dsp.times.total_ns[STAGES.index("vad")] for media in calls)
    assert vad_ns >= batch.busy_ns > 0  # the calls' VAD stage times carry the batch's inference time


def test_a_missed_tick_end_runs_the_batch_with_the_next_frame_and_loses_nothing() -> None:
    batch = SileroBatch()
    link = RecordingLink()
    media = CallMedia(0, link, MediaConfig(), DialplanEntry(name="t"), "c0", batch)
    media.start()
    frames = _callers()[0][:60]
    for f in frames:  # nobody calls end_tick: each frame finishes the one before it
        media.inbound(f)
    assert batch.late_runs == len(frames) - 1 and link.frames == len(frames) - 1
    batch.end_tick()
    assert link.frames == len(frames) and EventKind.SPEECH_START in link.events


def test_a_result_for_a_stream_reset_while_its_chunk_waited_is_dropped() -> None:
    batch = SileroBatch()
    vad = SileroVad()
    batch.attach(vad)
    speech = to_int16(at_level(read_clip("hours_f3"), -26))
    for i in range(0, 16000, 320):
        vad.push(speech[i : i + 320])
        batch.run_chunks()
    assert vad.probability > 0.5
    vad.push(speech[16000:16640])  # a chunk queued ...
    vad.reset()  # ... then the call goes on hold
    batch.run_chunks()
    assert vad.probability == 0.0 and not vad.batch_state().any()


def test_a_call_held_while_its_frame_waited_sends_no_speech_start() -> None:
    alone, _, _ = _run(None)
    onset = next(i for i, t in enumerate(alone[0]) if t[0])  # the tick whose frame starts speech
    batch = SileroBatch()
    link = RecordingLink()
    media = CallMedia(0, link, MediaConfig(), DialplanEntry(name="t"), "c0", batch)
    media.start()
    for f in _callers()[0][:onset]:
        media.inbound(f)
        batch.end_tick()
    media.inbound(_callers()[0][onset])
    media.hold(True)  # the control loop, while the onset frame waits for the tick's end
    batch.end_tick()
    assert EventKind.HOLD in link.events and EventKind.SPEECH_START not in link.events
    assert media.speech_starts == 0 and link.frames == onset  # nothing heard in hold reaches the engine
