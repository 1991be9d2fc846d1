"""The batch scheduler: fixed slots, one model step per tick for every slot that has a frame.

Sessions push 20 ms caller frames into their slot; a tick (every model frame, clocked by the
engine's loop) gathers every live, unfrozen slot holding a whole model frame, runs encoder,
LM and vocoder once for that batch, and scatters the results: agent audio as 20 ms int16
frames (only while the slot is speaking) and the model's turn signals. State stays on the
model's device between ticks. A slot that joins, leaves, resets or freezes changes only its
own row; the others' results are the same bits.

On CPU a tick gathers the ready rows into a compact batch (no work for idle slots). On CUDA
it steps all slots at once with the exec mask, so shapes never change, and can replay the step
as a CUDA graph.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

from engine.model.model import EVENT_NONE, TEXT_PAD, SpeechModel, StepInputs, StepOutputs, StreamState, text_tokens
from engine.model.pitch import PitchShifter

SUB_FRAME_SAMPLES = 320  # the session interface's 20 ms frame
MAX_PASSES = 2  # a slot that fell a frame behind catches up in a second, smaller pass


@dataclass(slots=True)
class SlotOutput:
    """What one step produced for one slot."""

    frames: list[bytes]  # 20 ms int16 agent frames; empty unless the slot was speaking
    caller_turn_over: float  # the model's probability that the caller has finished
    reply_over: float  # ... that its own reply is finished
    step: int  # frames this slot has been stepped


@dataclass
class SlotState:
    live: bool = False
    frozen: bool = False
    speaking: bool = False
    inbox: bytearray = field(default_factory=bytearray)
    text: deque[int] = field(default_factory=deque)
    events: deque[int] = field(default_factory=deque)
    outputs: deque[SlotOutput] = field(default_factory=deque)
    steps: int = 0
    rate: float = 1.0  # speaking rate: how densely say() lays out the reply's phoneme timeline
    pitch: float = 1.0  # pitch ratio, applied to the vocoded frames by `shifter`
    shifter: PitchShifter | None = None


@dataclass
class TickStats:
    batch: int
    seconds: float


class BatchScheduler:
    def __init__(self, model: SpeechModel, slots: int, cuda_graphs: bool = False) -> None:
        self.model, self.n = model, slots
        self.frame = model.cfg.frame_samples
        self.state: StreamState = model.init_state(slots)
        self.slots = [SlotState() for _ in range(slots)]
        self.full_batch = model.device.type == "cuda"
        self._graph: _GraphStep | None = None
        if cuda_graphs:
            if model.device.type != "cuda":
                raise ValueError("CUDA graphs need a CUDA device")
            self._graph = _GraphStep(model, self.state)
        self.last_tick: TickStats | None = None

    # -- slot lifecycle ---------------------------------------------------------------------------
    def join(self, slot: int, speaker: Tensor | None = None, prosody: tuple[float, ...] | None = None) -> None:
        self.reset(slot)
        self.slots[slot].live = True
        if speaker is not None:
            self.set_speaker(slot, speaker)
        if prosody is not None:
            self.set_prosody(slot, *prosody)

    def leave(self, slot: int) -> None:
        self.slots[slot] = SlotState()

    def reset(self, slot: int) -> None:
        """A fresh conversation in this slot: state zeroed, queues emptied; conditioning kept."""
        s = self.slots[slot]
        rows = torch.tensor([slot], device=self.model.device)
        speaker, prosody = self.state.speaker[slot].clone(), self.state.prosody[slot].clone()
        self.model.reset_rows(self.state, rows)
        self.state.speaker[slot], self.state.prosody[slot] = speaker, prosody
        self.slots[slot] = SlotState(live=s.live, frozen=s.frozen, rate=s.rate, pitch=s.pitch,
                                     shifter=PitchShifter(s.pitch) if s.pitch != 1.0 else None)

    def freeze(self, slot: int, frozen: bool = True) -> None:
        """Frozen (hold): no listening, no generation; the state waits unchanged."""
        s = self.slots[slot]
        s.frozen = frozen
        s.inbox.clear()

    # -- inputs -------------------------------------------------------------------------------------
    def push(self, slot: int, pcm: bytes) -> None:
        s = self.slots[slot]
        if s.live and not s.frozen:
            s.inbox += pcm

    def set_speaking(self, slot: int, speaking: bool) -> None:
        s = self.slots[slot]
        if speaking and not s.speaking and s.shifter is not None:
            s.shifter = PitchShifter(s.pitch)  # a new reply: nothing of the last one's tail
        s.speaking = speaking

    def say(self, slot: int, text: str) -> int:
        """Queue a reply's text for the slot; returns its length in model frames."""
        frontend = self.model.frontend  # a trained LM's phoneme timeline, else bytes
        s = self.slots[slot]
        tokens = frontend.reply_tokens(text, s.rate) if frontend is not None else text_tokens(text)
        s.text.extend(tokens)
        return len(tokens)

    def saying(self, slot: int) -> bool:
        """Is some of the slot's reply text still to be spoken?"""
        return bool(self.slots[slot].text)

    def unsay(self, slot: int) -> None:
        """Drop what is left of the slot's reply text (a reply cut off by the caller)."""
        self.slots[slot].text.clear()

    def event(self, slot: int, code: int) -> None:
        self.slots[slot].events.append(code)

    def set_speaker(self, slot: int, vector: Tensor) -> None:
        self.state.speaker[slot] = vector.to(self.state.speaker.device, self.state.speaker.dtype).view(-1)

    def set_prosody(self, slot: int, rate: float = 1.0, pitch: float = 1.0, emphasis: float = 0.0,
                    pause: float = 0.0) -> None:
        """`rate` (> 1 faster) lays out the next replies' phoneme timelines; `pitch` (a frequency
        ratio) shifts the vocoded audio. The LM's own prosody input gets neutral rate and pitch:
        it was trained at neutral prosody only, and an untrained input would only add noise."""
        if not (0.5 <= rate <= 2.0 and 0.5 <= pitch <= 2.0):
            raise ValueError(f"rate {rate} and pitch ratio {pitch} must lie within 0.5-2.0")
        s = self.slots[slot]
        s.rate, s.pitch = rate, pitch
        s.shifter = PitchShifter(pitch) if pitch != 1.0 else None
        self.state.prosody[slot] = torch.tensor([1.0, 1.0, emphasis, pause], dtype=self.state.prosody.dtype)

    def take(self, slot: int) -> list[SlotOutput]:
        out = list(self.slots[slot].outputs)
        self.slots[slot].outputs.clear()
        return out

    # -- the tick -----------------------------------------------------------------------------------
    def ready(self) -> list[int]:
        need = self.frame * 2
        return [i for i, s in enumerate(self.slots) if s.live and not s.frozen and len(s.inbox) >= need]

    def tick(self) -> int:
        """Step every ready slot (up to MAX_PASSES frames each); returns the number of slot-steps."""
        t0, done = time.perf_counter(), 0
        for _ in range(MAX_PASSES):
            rows = self.ready()
            if not rows:
                break
            self._step(rows)
            done += len(rows)
        self.last_tick = TickStats(done, time.perf_counter() - t0)
        return done

    def _inputs(self, rows: list[int], width: int, index: list[int]) -> StepInputs:
        dev = self.model.device
        pcm = np.zeros((width, self.frame), np.float32)
        text = np.full(width, TEXT_PAD, np.int64)
        events = np.full(width, EVENT_NONE, np.int64)
        speaking = np.zeros(width, bool)
        mask = np.zeros(width, bool)
        nbytes = self.frame * 2
        for slot, row in zip(rows, index):
            s = self.slots[slot]
            pcm[row] = np.frombuffer(bytes(s.inbox[:nbytes]), np.int16) / 32768.0
            del s.inbox[:nbytes]
            if s.speaking and s.text:
                text[row] = s.text.popleft()
            if s.events:
                events[row] = s.events.popleft()
            speaking[row], mask[row] = s.speaking, True
        return StepInputs(torch.from_numpy(pcm).to(dev, self.model.dtype), torch.from_numpy(text).to(dev),
                          torch.from_numpy(events).to(dev), torch.from_numpy(speaking).to(dev),
                          torch.from_numpy(mask).to(dev))

    def _step(self, rows: list[int]) -> None:
        if self.full_batch or len(rows) == self.n:
            inp = self._inputs(rows, self.n, rows)
            if self._graph is not None:
                out = self._graph.run(inp)
            else:
                self.state, out = self.model.step(self.state, inp)
            self._scatter(rows, rows, out)
            return
        idx = torch.tensor(rows, device=self.model.device)
        sub = self.state.rows(idx)
        sub, out = self.model.step(sub, self._inputs(rows, len(rows), list(range(len(rows)))))
        self.state.put_rows(idx, sub)
        self._scatter(rows, list(range(len(rows))), out)

    def _scatter(self, rows: list[int], index: list[int], out: StepOutputs) -> None:
        pcm = (out.pcm.float().clamp(-1, 1) * 32767).to(torch.int16).cpu().numpy()
        signals = out.signals.float().cpu().numpy()
        for slot, row in zip(rows, index):
            s = self.slots[slot]
            s.steps += 1
            frames = []
            if s.speaking:
                raw = (s.shifter.process(pcm[row]) if s.shifter is not None else pcm[row]).tobytes()
                step = SUB_FRAME_SAMPLES * 2
                frames = [raw[i : i + step] for i in range(0, len(raw), step)]
            s.outputs.append(SlotOutput(frames, float(signals[row, 0]), float(signals[row, 1]), s.steps))

    def memory_bytes(self) -> int:
        """Device memory of the per-slot state (all slots)."""
        return self.state.bytes()


class _GraphStep:
    """The full-batch step captured once as a CUDA graph; inputs are copied into static tensors."""

    def __init__(self, model: SpeechModel, state: StreamState) -> None:
        n, dev = state.lm_pos.shape[0], model.device
        self.state = state
        self.inp = StepInputs(torch.zeros(n, model.cfg.frame_samples, device=dev, dtype=model.dtype),
                              torch.full((n,), TEXT_PAD, device=dev, dtype=torch.long),
                              torch.zeros(n, device=dev, dtype=torch.long),
                              torch.zeros(n, device=dev, dtype=torch.bool),
                              torch.zeros(n, device=dev, dtype=torch.bool))
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(3):  # warm-up with an all-false exec mask leaves the state unchanged
                model.step(state, self.inp)
        torch.cuda.current_stream().wait_stream(side)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            new, self.out = model.step(state, self.inp)
            _copy_state(state, new)

    def run(self, inp: StepInputs) -> StepOutputs:
        for name in ("pcm", "text", "events", "speaking", "exec_mask"):
            getattr(self.inp, name).copy_(getattr(inp, name))
        self.graph.replay()
        return self.out


def _copy_state(dst: StreamState, src: StreamState) -> None:
    for a, b in zip(_flat(dst), _flat(src)):
        a.copy_(b)


def _flat(s: StreamState) -> list[Tensor]:
    return [*s.enc, s.lm_k, s.lm_v, s.lm_pos, s.prev_agent, *s.voc, s.speaker, s.prosody]
