"""Interruption figures of one captured call (gateway/bench/capture.py), from the RTP alone,
cross-checked with the engine's turn notes where the wire cannot tell.

Agent "speech" is a packet above SPEECH_DBFS; the agent *stops* where a run of at least
SILENT_RUN packets below it begins (a send stall — no packets at all — is not a stop).

    barge        latency = caller speech onset in the SENT RTP (first packet above
                 SPEECH_DBFS, cross-checked with the clip's manifest speech_start) → the
                 first agent packet of the stop that follows; missed if none within MAX_STOP_S
    backchannel  the agent may pause; it must play again within RESUME_S of the caller's
                 last speech packet, and the engine must not have committed the barge-in
                 (its turn notes: the wire cannot tell the resumed greeting from the echo
                 agent's reply, which starts only ~0.2 s later)
    silent/echo  the greeting stopping before its natural end is a false barge-in (on the
                 wire); the gateway's own pause counter gives the count per agent turn
    hold         agent speech packets between the hold re-INVITE's 200 and the re-INVITE
                 that resumes must be zero; after it the greeting must continue
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from gateway.bench.capture import CapturedCall, RtpPacket

SPEECH_DBFS = -50.0
SILENT_RUN = 10  # packets (200 ms): shorter dips (an underrun, a late frame) are not a stop
MAX_STOP_S = 2.0  # an agent that has not stopped this long after the caller's onset missed it
RESUME_S = 1.5  # after a backchannel's last packet (the VAD's speech-stop hangover is 0.5 s)
ONSET_TOLERANCE = 2  # packets between the measured onset and the manifest's speech_start
NATURAL_GAP_S = 0.15  # a stop this close to a gap of the greeting itself is the greeting's
END_MARGIN_S = 0.2  # stops this close to the greeting's end are its end
HOLD_GRACE_S = 0.02  # packets already in flight when the hold took effect


@dataclass
class CallFigures:
    call_id: str
    kind: str
    agent_turn: bool = False  # the agent spoke in this call
    onset_t: float | None = None
    onset_ok: bool = False
    speaking_at_onset: bool = False
    stop_t: float | None = None
    latency_ms: float | None = None
    greeting_cut: bool = False  # the greeting stopped on the wire while the caller had not spoken
    gateway_pauses: int = 0  # the worker's barge-in pauses in this call ("call ended" summary)
    agent_turns: int = 0  # utterances the engine started ("speak ..." turn notes)
    paused: bool = False  # backchannel: the agent stopped after the onset
    resumed: bool = False  # ... and played again within RESUME_S of the caller's last packet
    pause_ms: float | None = None
    committed: bool = False  # the engine's turn notes say "barge-in commit"
    engine_pauses: int = 0  # the engine's "barge-in pause" notes
    hold_speech_packets: int | None = None
    resumed_after_hold: bool | None = None
    underruns: int = 0
    problem: str = ""  # why this call does not count

    @property
    def measured(self) -> bool:
        return not self.problem


@dataclass
class Greeting:
    seconds: float  # from its first speech frame to the end of its last one
    gaps_s: list[float]  # where it falls silent, from its first speech frame (a WAV's lead silence
    # is never sent as speech, so the agent's first speech packet is that frame)


def greeting_shape(pcm: np.ndarray, rate: int = 16000) -> Greeting:
    frame = rate // 50
    n = pcm.size // frame
    x = pcm[: n * frame].astype(np.float64).reshape(n, frame)
    level = 10 * np.log10(np.maximum((x * x).mean(axis=1), 1e-12)) - 20 * np.log10(32768.0)
    loud = np.flatnonzero(level >= SPEECH_DBFS)
    if loud.size == 0:
        return Greeting(0.0, [])
    first, last = int(loud[0]), int(loud[-1])
    gaps, run = [], 0
    for i in range(first, last + 1):
        run = run + 1 if level[i] < SPEECH_DBFS else 0
        if run == SILENT_RUN:
            gaps.append((i - SILENT_RUN + 1 - first) * 0.02)
    return Greeting((last + 1 - first) * 0.02, gaps)


def _speech(p: RtpPacket) -> bool:
    return p.level is not None and p.level > SPEECH_DBFS


def _quiet(p: RtpPacket) -> bool:
    return p.level is not None and p.level <= SPEECH_DBFS


def stops(agent: list[RtpPacket], lo: float, hi: float) -> list[tuple[float, float | None]]:
    """(stop time, next speech time or None) for every stop of the agent beginning in [lo, hi)."""
    out: list[tuple[float, float | None]] = []
    spoke, i = False, 0
    while i < len(agent):
        p = agent[i]
        if _speech(p):
            spoke = True
            i += 1
            continue
        if not spoke or not _quiet(p):
            i += 1
            continue
        j = i
        while j < len(agent) and _quiet(agent[j]):
            j += 1
        if j - i >= SILENT_RUN and lo <= p.t < hi:
            out.append((p.t, agent[j].t if j < len(agent) and _speech(agent[j]) else None))
        spoke = j < len(agent) and _speech(agent[j])
        i = j
    return out


def _first_speech(packets: list[RtpPacket], after: float = -1.0) -> RtpPacket | None:
    return next((p for p in packets if p.t >= after and _speech(p)), None)


def _natural(stop_t: float, start_t: float, greeting: Greeting) -> bool:
    offset = stop_t - start_t
    return offset >= greeting.seconds - END_MARGIN_S or any(abs(offset - g) < NATURAL_GAP_S for g in greeting.gaps_s)


def _greeting_cut(call: CapturedCall, start_t: float, until: float, greeting: Greeting) -> bool:
    """Did the greeting stop before its end? (Only its first stop: after one, what plays is
    no longer the greeting, and its gaps say nothing.)"""
    found = stops(call.agent_rtp, start_t, until)
    return bool(found) and not _natural(found[0][0], start_t, greeting)


def analyse(
    call: CapturedCall,
    kind: str,
    greeting: Greeting,
    speech_start_s: float = 0.5,
    notes: list[str] | None = None,
    summary: dict[str, object] | None = None,
) -> CallFigures:
    """The figures of one call of `kind` (barge, backchannel, silent, echo, hold)."""
    notes = notes or []
    f = CallFigures(call.call_id, kind)
    f.committed = "barge-in commit" in notes
    f.engine_pauses = notes.count("barge-in pause")
    f.agent_turns = sum(1 for n in notes if n.startswith("speak "))
    if summary:
        f.underruns = int(summary.get("underruns", 0) or 0)  # type: ignore[call-overload]
        f.gateway_pauses = int(summary.get("barge_in_pauses", 0) or 0)  # type: ignore[call-overload]
    if call.final_status != 200 or call.answered_t is None:
        f.problem = f"not answered ({call.final_status})"
        return f
    first = _first_speech(call.agent_rtp)
    f.agent_turn = first is not None
    if first is None:
        f.problem = "the agent never spoke"
        return f
    end = call.bye_t if call.bye_t is not None else call.agent_rtp[-1].t
    if kind in ("barge", "backchannel"):
        _caller_figures(f, call, greeting, first.t, end, speech_start_s)
    elif kind == "hold":
        _hold_figures(f, call)
    else:
        f.greeting_cut = _greeting_cut(call, first.t, end, greeting)
    return f


def _caller_figures(
    f: CallFigures, call: CapturedCall, greeting: Greeting, start_t: float, end: float, speech_start_s: float
) -> None:
    caller = call.caller_rtp
    onset = next((i for i, p in enumerate(caller) if _speech(p)), None)
    if onset is None:
        f.problem = "no caller speech in the capture"
        return
    f.onset_t = caller[onset].t
    f.onset_ok = abs(onset - round(speech_start_s / 0.02)) <= ONSET_TOLERANCE
    f.greeting_cut = _greeting_cut(call, start_t, f.onset_t, greeting)
    # The last packets the agent sent before the onset (however long ago: a stalled sender
    # was still in the middle of its greeting, and the stall is part of the latency).
    before = [p for p in call.agent_rtp if p.t < f.onset_t][-3:]
    f.speaking_at_onset = len(before) == 3 and all(_speech(p) for p in before)
    if not f.onset_ok:
        f.problem = f"speech onset at packet {onset}, manifest says {speech_start_s:g} s"
        return
    if not f.speaking_at_onset:
        f.problem = "the agent was not speaking at the caller's onset"
        return
    after = stops(call.agent_rtp, f.onset_t, min(end, f.onset_t + MAX_STOP_S))
    if after:
        f.stop_t, resume_t = after[0]
        f.latency_ms = (f.stop_t - f.onset_t) * 1000
        f.paused = True
        if f.kind == "backchannel":
            last_caller = max(p.t for p in caller if _speech(p))
            if resume_t is not None:
                f.pause_ms = (resume_t - f.stop_t) * 1000
                f.resumed = resume_t - last_caller <= RESUME_S
    elif f.kind == "barge":
        f.problem = f"missed: the agent did not stop within {MAX_STOP_S:g} s"


def _hold_figures(f: CallFigures, call: CapturedCall) -> None:
    held = [r for r in call.reinvites if r.direction in ("sendonly", "inactive")]
    back = [r for r in call.reinvites if r.direction == "sendrecv" and held and r.t > held[0].t]
    if not held or held[0].answered_t is None or not back:
        f.problem = "no hold / resume re-INVITEs answered in the capture"
        return
    lo, hi = held[0].answered_t + HOLD_GRACE_S, back[0].t
    f.hold_speech_packets = sum(1 for p in call.agent_rtp if lo <= p.t < hi and _speech(p))
    resumed_at = back[0].answered_t or back[0].t
    f.resumed_after_hold = _first_speech(call.agent_rtp, resumed_at) is not None


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values, dtype=np.float64), q)) if values else float("nan")
