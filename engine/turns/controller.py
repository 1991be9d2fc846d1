"""The turn-taking controller of one session: when the agent speaks, yields and waits.

States: LISTENING (the caller has the floor or nobody does), RESPONDING (the caller's turn
ended; the reply is being made), SPEAKING (agent audio is queued or playing), HELD.

Barge-in (../shared/DESIGN.md): the gateway has already paused playout in the tick the
caller's speech started; here the pause is *committed* once the speech outlasts
`barge_in_min_ms` (FLUSH: the gateway drops the queue and reports what the caller heard,
the agent is told where it was cut off) or *resumed* if it stops sooner (RESUME: a
backchannel or noise; playback continues where it paused). Speech that starts again within
`barge_in_join_ms` of a resume continues the voiced count: "wait — … — I have a question",
split by a pause longer than the VAD's hangover, commits on its second part instead of
needing the whole minimum again.

The controller is clocked by the caller frames the gateway sends every 20 ms, so every
decision has a timestamp on the gateway's clock. It emits at most `lead_frames` agent
frames ahead of playout so pausing and flushing stay cheap.

An agent may answer a turn with a PendingReply (made off the engine's loop): the controller
stays RESPONDING and polls it every frame; a reply that becomes ready while the caller is
speaking again is dropped (the turn in progress gets its own). A Reply's action (transfer,
hang up) is done when the gateway reports its speech FINISHED.

A streaming agent (engine/agents/base.py StreamingAgent, e.g. the model agent) hears every
caller frame, and its end-of-turn signal must agree with the VAD silence (or the silence
outlasts `end_of_turn_max_ms`); its reply arrives a few frames at a time while it is made.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Callable

import numpy as np

from engine.agents.base import Agent, AgentAction, PendingReply, Reply
from engine.session import (
    FRAME_MS,
    FRAME_SAMPLES,
    AgentAudio,
    AudioFlags,
    Command,
    CommandKind,
    EventKind,
    PlayoutState,
    SessionEvent,
)


def level_dbfs(pcm: bytes) -> float:
    x = np.frombuffer(pcm, dtype=np.int16).astype(np.float32)
    return 10.0 * float(np.log10(float(np.dot(x, x)) / max(1, x.size) / 32768.0**2 + 1e-12))


class TurnState(enum.Enum):
    LISTENING = "listening"
    RESPONDING = "responding"
    SPEAKING = "speaking"
    HELD = "held"


@dataclass
class TurnSettings:
    interruptible: bool = True
    barge_in_min_ms: int = 300
    barge_in_join_ms: int = 600  # speech this soon after a resumed barge-in continues its voiced count
    end_of_turn_ms: int = 200
    preroll_ms: int = 200  # caller audio kept from before the VAD's speech-start
    lead_frames: int = 3  # agent frames emitted ahead of playout
    voiced_dbfs: float = -50.0  # a caller frame this loud counts towards barge_in_min_ms
    end_of_turn_max_ms: int = 1500  # streaming agents: silence that ends a turn without the model's signal

    @classmethod
    def from_agent(cls, agent: dict[str, object]) -> "TurnSettings":
        s = cls()
        for name in ("interruptible", "barge_in_min_ms", "barge_in_join_ms", "end_of_turn_ms", "end_of_turn_max_ms"):
            if name in agent:
                setattr(s, name, type(getattr(s, name))(agent[name]))  # type: ignore[call-overload]
        return s


Emit = Callable[[AgentAudio | Command], None]


class TurnController:
    def __init__(
        self, agent: Agent, settings: TurnSettings, emit: Emit, on_note: Callable[[float, str], None] | None = None
    ) -> None:
        self.agent, self.settings, self._emit, self._on_note = agent, settings, emit, on_note
        self.state = TurnState.LISTENING
        self._before_hold = TurnState.LISTENING
        self._utterance_id = 0
        self._pending: list[bytes] = []  # frames of the current utterance not yet emitted
        self._unfinished = False  # emitted, waiting for the gateway's FINISHED
        self._barge_t0: float | None = None  # caller speech started over the agent at this time
        self._barge_voiced_ms = 0  # voiced caller audio since then
        self._barge_resumed: tuple[float, int] | None = None  # (when, voiced ms) of the last resumed one
        self._in_speech = False
        self._turn: list[bytes] = []
        self._preroll: list[bytes] = []
        self._turn_end_due: float | None = None
        self.log: list[tuple[float, str]] = []  # (t, what) for tests and debugging
        self._streaming = bool(getattr(agent, "streaming", False))
        self._stream_open = False  # a streaming reply is still being made
        self._owed = 0  # frames playout wanted while a streaming reply had none ready
        self._waiting: PendingReply | None = None  # a reply being made off the loop
        self._then: tuple[int, AgentAction] | None = None  # (utterance, action once it has played)

    # -- inputs ---------------------------------------------------------------------------
    def on_frame(self, t: float, pcm: bytes) -> None:
        if self.state is TurnState.HELD:
            return
        if self._streaming:
            self.agent.hear(t, pcm)  # type: ignore[attr-defined]
        if self._in_speech:
            self._turn.append(pcm)
        else:
            self._preroll.append(pcm)
            del self._preroll[: -max(1, self.settings.preroll_ms // FRAME_MS)]
        if self._barge_t0 is not None:
            # Count voiced time, not time since speech-start: the VAD's speech-stop comes its
            # hangover (vad_stop_ms) after a backchannel ended, later than barge_in_min_ms.
            if level_dbfs(pcm) >= self.settings.voiced_dbfs:
                self._barge_voiced_ms += FRAME_MS
            if self._barge_voiced_ms >= self.settings.barge_in_min_ms:
                self._commit_barge_in(t)
        if self._turn_end_due is not None and t >= self._turn_end_due and self._turn_over(t):
            self._end_caller_turn(t)
        if self._stream_open:
            self._pull(t)
        if self._waiting is not None:
            self._poll_reply(t)
        if self.state is TurnState.SPEAKING and self._barge_t0 is None:
            if self._streaming:
                self._owed += 1
                self._emit_owed()
            else:
                self._emit_frames(1)

    def on_event(self, ev: SessionEvent) -> None:
        k = ev.kind
        if k is EventKind.STARTED:
            self._speak(self.agent.greeting(), ev.t, "greeting")
        elif k is EventKind.SPEECH_START:
            self._speech_start(ev.t)
        elif k is EventKind.SPEECH_STOP:
            self._speech_stop(ev.t)
        elif k is EventKind.HOLD and self.state is not TurnState.HELD:
            self._before_hold, self.state = self.state, TurnState.HELD
            self._in_speech, self._turn, self._turn_end_due = False, [], None
            if self._streaming:
                self.agent.set_held(True)  # type: ignore[attr-defined]
            self._note(ev.t, "hold")
        elif k is EventKind.RESUME and self.state is TurnState.HELD:
            self.state = self._before_hold
            if self._streaming:
                self.agent.set_held(False)  # type: ignore[attr-defined]
            self._note(ev.t, "resume from hold")
        elif k is EventKind.DTMF:
            self._dtmf(ev)
        elif k is EventKind.PLAYOUT:
            self._playout(ev)

    # -- caller turns ---------------------------------------------------------------------------
    def _speech_start(self, t: float) -> None:
        if self.state is TurnState.HELD:
            return
        self._in_speech = True
        self._turn_end_due = None
        if not self._turn:
            self._turn = list(self._preroll)
        if self.state is TurnState.SPEAKING:
            if self.settings.interruptible and self._barge_t0 is None:
                self._barge_t0 = t  # the gateway paused playout in this same tick
                self._barge_voiced_ms = 0
                resumed, self._barge_resumed = self._barge_resumed, None
                if resumed is not None and t - resumed[0] <= self.settings.barge_in_join_ms / 1000:
                    self._barge_voiced_ms = resumed[1]
                self._note(t, "barge-in pause")
            elif not self.settings.interruptible:
                self._turn = []  # the agent holds the floor: this speech is not a turn
                self._in_speech = False

    def _speech_stop(self, t: float) -> None:
        if not self._in_speech:
            return
        self._in_speech = False
        if self._barge_t0 is not None:  # shorter than the minimum: backchannel or noise
            self._barge_t0 = None
            self._barge_resumed = (t, self._barge_voiced_ms)
            self._turn = []
            self._emit(Command(CommandKind.RESUME, t, reason="short speech"))
            self._note(t, "barge-in resumed")
            return
        if self.state is TurnState.LISTENING:
            self._turn_end_due = t + self.settings.end_of_turn_ms / 1000

    def _commit_barge_in(self, t: float) -> None:
        self._barge_t0 = None
        self._pending, self._unfinished, self._then = [], False, None
        if self._stream_open:
            self._stream_open = False
            self.agent.stop_reply()  # type: ignore[attr-defined]
        self._emit(Command(CommandKind.FLUSH, t, reason="barge-in"))
        self.state = TurnState.LISTENING
        self._note(t, "barge-in commit")

    def _end_caller_turn(self, t: float) -> None:
        self._turn_end_due = None
        audio = np.frombuffer(b"".join(self._turn), dtype=np.int16)
        self._turn = []
        self.state = TurnState.RESPONDING
        self._note(t, "caller turn ended")
        if self._streaming:
            self._utterance_id += 1
            self._pending, self._stream_open, self._owed = [], True, 0
            self.agent.start_reply(t, audio)  # type: ignore[attr-defined]
            return
        self._waiting = None  # a reply to an earlier turn still being made is superseded
        self._answer(self.agent.respond(audio), t, "reply")

    def _answer(self, answer: "np.ndarray | Reply | PendingReply | None", t: float, what: str) -> None:
        if isinstance(answer, Reply):
            self._speak(answer.audio, t, what)
            if answer.then is not None:
                if self.state is TurnState.SPEAKING:
                    self._then = (self._utterance_id, answer.then)
                else:
                    self._act(answer.then, t)
        elif answer is not None and hasattr(answer, "poll"):
            self._waiting = answer  # type: ignore[assignment]
            self._note(t, "reply pending")
        else:
            self._speak(answer, t, what)  # type: ignore[arg-type]

    def _poll_reply(self, t: float) -> None:
        assert self._waiting is not None
        reply = self._waiting.poll()
        if reply is None:
            return
        self._waiting = None
        if self.state is not TurnState.RESPONDING or self._in_speech:
            self._note(t, "reply dropped: the caller is speaking")
            return
        self._answer(reply, t, "reply")

    def _act(self, action: AgentAction, t: float) -> None:
        self._emit(Command(action.kind, t, action.target, action.reason))
        self._note(t, f"action {action.kind.name.lower()}")

    def _turn_over(self, t: float) -> bool:
        """VAD silence has lasted end_of_turn_ms; a streaming agent's model must agree, up to a limit."""
        if not self._streaming or self._turn_end_due is None:
            return True
        s = self.settings
        if t >= self._turn_end_due + (s.end_of_turn_max_ms - s.end_of_turn_ms) / 1000:
            return True
        return bool(self.agent.caller_turn_over())  # type: ignore[attr-defined]

    # -- streaming replies ----------------------------------------------------------------------------
    def _pull(self, t: float) -> None:
        frames, done = self.agent.take_audio()  # type: ignore[attr-defined]
        self._pending += frames
        self._stream_open = not done
        action = self.agent.reply_action() if done else None  # type: ignore[attr-defined]
        if action is not None:
            if self._pending or self._unfinished:
                self._then = (self._utterance_id, action)
            else:
                self._act(action, t)
        if self.state is not TurnState.RESPONDING:
            return
        if self._pending and (done or len(self._pending) > 1):
            self.state, self._unfinished = TurnState.SPEAKING, True
            self._note(t, f"speak reply #{self._utterance_id} (streaming)")
            self._owed = self.settings.lead_frames
            self._emit_owed()
        elif done:
            self.state = TurnState.LISTENING
            self._note(t, f"reply #{self._utterance_id} empty")

    def _emit_owed(self) -> None:
        # while a streaming reply is open one frame stays back, so its last frame can carry END_OF_UTTERANCE
        n = min(self._owed, len(self._pending) - (1 if self._stream_open else 0))
        if n > 0:
            self._emit_frames(n)
            self._owed -= n

    # -- agent speech ---------------------------------------------------------------------------
    def _speak(self, audio: np.ndarray | None, t: float, what: str) -> None:
        if audio is None or audio.size == 0:
            if self.state is TurnState.RESPONDING:
                self.state = TurnState.LISTENING
            return
        pad = (-audio.size) % FRAME_SAMPLES
        raw = np.concatenate([audio.astype(np.int16), np.zeros(pad, np.int16)]).tobytes()
        step = FRAME_SAMPLES * 2
        self._utterance_id += 1
        self._pending = [raw[i : i + step] for i in range(0, len(raw), step)]
        self._unfinished, self._owed = True, 0
        self.state = TurnState.SPEAKING
        self._note(t, f"speak {what} #{self._utterance_id} ({len(self._pending) * FRAME_MS} ms)")
        self._emit_frames(self.settings.lead_frames)

    def _emit_frames(self, n: int) -> None:
        flags = AudioFlags.INTERRUPTIBLE if self.settings.interruptible else AudioFlags.NONE
        for _ in range(min(n, len(self._pending))):
            pcm = self._pending.pop(0)
            last = AudioFlags.END_OF_UTTERANCE if not self._pending else AudioFlags.NONE
            self._emit(AgentAudio(pcm, self._utterance_id, flags | last))

    def _playout(self, ev: SessionEvent) -> None:
        if ev.playout is PlayoutState.FINISHED and ev.utterance == self._utterance_id:
            self._unfinished = False
            if self.state is TurnState.SPEAKING and not self._pending:
                self.state = TurnState.LISTENING
                self._note(ev.t, f"utterance #{ev.utterance} played")
            if self._then is not None and self._then[0] == ev.utterance:
                action, self._then = self._then[1], None
                self._act(action, ev.t)
        elif ev.playout is PlayoutState.FLUSHED:
            self.agent.on_interrupted(ev.utterance, ev.position_ms)
            self._note(ev.t, f"cut off: caller heard {ev.position_ms} ms of #{ev.utterance}")

    def _dtmf(self, ev: SessionEvent) -> None:
        self._note(ev.t, f"dtmf {ev.digit}")
        if self.state is TurnState.HELD:
            return
        answer = self.agent.on_dtmf(ev.digit, ev.duration_ms)
        if isinstance(answer, AgentAction):
            self._act(answer, ev.t)
        elif answer is not None and self.state is not TurnState.SPEAKING:
            self._speak(answer, ev.t, f"dtmf {ev.digit}")

    def _note(self, t: float, what: str) -> None:
        self.log.append((t, what))
        if self._on_note is not None:
            self._on_note(t, what)
