"""A streaming pitch shifter for one slot's agent audio: the pitch half of the prosody controls.

The unit LM was trained at neutral prosody only, so pitch changes after the vocoder. Grains of
20 ms are laid down every 10 ms (hann, 50 % overlap); each is read from the input `ratio` times
faster than real time (so its periods are `ratio` times shorter) from about the same moment of
the input, so duration is kept. Where exactly a grain starts is chosen within +-6 ms so that
its beginning best matches how the previous grain's input would have continued (WSOLA): the
periods of consecutive grains line up instead of cancelling.

Output lags input by a fixed `latency` (about 40 ms at +-2 semitones); a frame-by-frame run
equals one call on the whole signal.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

HOP = 160  # 10 ms at 16 kHz
GRAIN = 2 * HOP
SEARCH = 96  # +- samples a grain's start may move to line up with its predecessor
Floats = npt.NDArray[np.float64]


def semitones_to_ratio(semitones: float) -> float:
    return float(2.0 ** (semitones / 12.0))


class PitchShifter:
    def __init__(self, ratio: float) -> None:
        if not 0.5 <= ratio <= 2.0:
            raise ValueError(f"pitch ratio {ratio} outside 0.5-2.0 (one octave either way)")
        self.ratio = ratio
        need = GRAIN / 2 + ratio * GRAIN / 2 + SEARCH + HOP + 2
        self.latency = HOP * math.ceil(need / HOP)  # samples
        self._window = np.hanning(GRAIN + 1)[:-1]  # periodic: overlapping halves sum to one
        self._input = np.zeros(0)  # input from absolute sample `_in_start` on
        self._in_start = 0
        self._in_end = 0
        self._acc = np.zeros(0)  # overlap-add accumulator from absolute output sample `_out_start`
        self._out_start = 0
        self._grain = 0  # next grain index
        self._prev_start: float | None = None  # input position the previous grain started at
        self._emitted = 0

    def process(self, frame: npt.NDArray[np.int16]) -> npt.NDArray[np.int16]:
        """`frame` in, as many samples out, `latency` samples later."""
        self._input = np.concatenate([self._input, frame.astype(np.float64)])
        self._in_end += frame.size
        while self._grain_ready():
            self._add_grain()
        t = self._emitted - self.latency  # output time of this call's first sample (< 0: still silent)
        out = np.zeros(frame.size)
        first = min(frame.size, max(0, -t))
        out[first:] = self._take(t + first, frame.size - first)
        self._emitted += frame.size
        self._trim()
        result: npt.NDArray[np.int16] = np.clip(np.round(out), -32768, 32767).astype(np.int16)
        return result

    def _nominal_start(self, k: int) -> float:
        """The input position grain k starts at so that its centre sits at its output centre."""
        return k * HOP + GRAIN / 2 - self.ratio * GRAIN / 2

    def _grain_ready(self) -> bool:
        return self._nominal_start(self._grain) + SEARCH + self.ratio * GRAIN + 2 < self._in_end

    def _read(self, starts: Floats, length: int) -> Floats:
        """Input read at `ratio` times real time from each start: [len(starts), length]."""
        pos = starts[:, None] + self.ratio * np.arange(length)[None, :] - self._in_start
        i = np.floor(pos).astype(np.int64)
        frac = pos - i
        i = np.clip(i, 0, self._input.size - 2)
        out: Floats = self._input[i] * (1 - frac) + self._input[i + 1] * frac
        return out

    def _add_grain(self) -> None:
        k = self._grain
        nominal = self._nominal_start(k)
        lo = max(nominal - SEARCH, self._in_start)
        candidates = np.arange(math.floor(lo), math.floor(nominal + SEARCH) + 1, dtype=np.float64)
        if self._prev_start is None or candidates.size == 1:
            start = max(nominal, float(self._in_start))
        else:
            target = self._read(np.array([self._prev_start + self.ratio * HOP]), HOP)[0]
            heads = self._read(candidates, HOP)
            score = heads @ target / np.sqrt((heads * heads).sum(1) * (target @ target) + 1e-9)
            start = float(candidates[int(np.argmax(score))])
        grain = self._read(np.array([start]), GRAIN)[0] * self._window
        at = k * HOP - self._out_start
        if at + GRAIN > self._acc.size:
            self._acc = np.concatenate([self._acc, np.zeros(at + GRAIN - self._acc.size)])
        self._acc[at : at + GRAIN] += grain
        self._prev_start = start
        self._grain += 1

    def _take(self, t: int, n: int) -> Floats:
        """Final output samples [t, t + n) (absolute output time)."""
        a = t - self._out_start
        out = np.zeros(n)
        avail = max(0, min(n, self._acc.size - a))
        out[:avail] = self._acc[a : a + avail]
        return out

    def _trim(self) -> None:
        """Drop output already emitted and input no future grain can reach."""
        done = max(0, self._emitted - self.latency - self._out_start)
        done = min(done, self._grain * HOP - self._out_start)
        if done > 0:
            self._acc = self._acc[done:]
            self._out_start += done
        keep_from = math.floor(self._nominal_start(self._grain) - SEARCH) - 2
        keep_from = min(keep_from, math.floor(self._prev_start or 0) + 1 - 2)
        if keep_from > self._in_start:
            self._input = self._input[keep_from - self._in_start :]
            self._in_start = keep_from
