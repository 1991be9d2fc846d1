"""Could what we hear be the echo of what we sent? A spectral bound, and whether the line echoes at all.

An echo path is passive: in every frequency band the echo is no louder than the sent audio
it came from (ERL >= 0 dB; hybrids and handsets give 6-20 dB), delayed by the line (up to
`LAGS` frames) and smeared by reverberation (up to `TAIL` frames). So heard audio whose band
powers exceed that bound in most time-frequency cells — at every delay the echo could have
— is not (only) echo: the caller is talking. This holds before the canceller has converged,
which is exactly when the warm-up gate needs it: a caller who says "hello?" over the
greeting on an echo-free line, or talks at a normal level over an unconverged canceller,
is heard at once instead of having to out-shout the agent.

How loud the echo can be relative to the sent audio is learned as the call goes: for each
lag, heard power over the sent power of the frames at that lag, over the last second of
agent audio; a low quantile of it (the caller's pauses) bounds the echo path's gain at the
true lag (a lag with too little agent audio yet keeps `SLACK_DB`). On an echo-free line
that bound drops to the noise floor within a second of greeting, so the caller is heard at
any normal level; on a line that echoes at ERL 6 dB it stays near -6 dB, and only speech
beyond it counts. `MARGIN_DB` covers spectral colour of the path (a band may carry more
than the path's average gain) and the codec's quantization; before anything is learned the
bound is `SLACK_DB` above the sent audio. Cells are only counted where the heard band is
above its own noise floor (the minimum over the last second).
Clipping in the far phone spreads echo into bands the agent did not use; that is a minority
of cells, hence a fraction (`UNEXPLAINED_FRACTION`) rather than any one cell.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from engine.session import FRAME_SAMPLES, SAMPLE_RATE

LAGS = 30  # frames: the echo may come back up to 600 ms late (AEC3's own reach is ~500 ms)
TAIL = 4  # frames: reverberation carries a sent frame's energy ~100 ms on (20 dB down after that)
WINDOW = 3  # heard frames judged together (60 ms)
SLACK_DB = 10.0  # how far a band may exceed the sent audio's bound and still be echo (nothing learned yet)
MARGIN_DB = 10.0  # above the learned gain of the echo path
GAIN_FRAMES = 50  # heard frames (of agent audio) the gain is learned over
GAIN_QUANTILE = 20  # percent: low enough to land in the caller's pauses
GAIN_EVERY = 5  # frames between updates of the learned gains (the ranking costs ~40 µs)
GAIN_MIN_SAMPLES = 15  # per lag, before the learned gain counts
ECHO_FREE_DB = -30.0  # every lag's learned gain below this: no echo on this line
ECHO_RETURNS_DB = -24.0  # any lag's gain above this: the echo is back (hysteresis)
FAR_ACTIVE = 10 ** (-50 / 10)  # mean-square power (full scale 1.0) of a sent frame that is agent audio
NOISE_MARGIN_DB = 6.0  # a cell counts when the heard band is this far above its noise floor
NOISE_FRAMES = 50  # noise floor: the minimum band power over the last second
NOISE_TYPICAL = 2.0  # a typical noise frame's power over the quietest of NOISE_FRAMES
UNEXPLAINED_FRACTION = 0.5  # of counted cells beyond the bound at every lag → not echo
MIN_CELLS = 8  # fewer counted cells than this: too little heard to judge

_EDGES_HZ = (100, 200, 300, 400, 510, 630, 770, 920, 1080, 1270, 1480, 1720, 2000, 2320, 2700, 3150, 3700, 4400, 5300, 6400, 7700)
_BIN_HZ = SAMPLE_RATE / FRAME_SAMPLES
_EDGES = np.array([round(f / _BIN_HZ) for f in _EDGES_HZ])
BANDS = len(_EDGES) - 1
_WINDOW_FN = np.hanning(FRAME_SAMPLES)
_HISTORY = LAGS + TAIL + WINDOW
_BINS = np.diff(_EDGES)
# Expected band power of white noise at -80 dBFS: quieter cells never count (digital silence).
ABS_FLOOR = (32768.0 * 10 ** (-80 / 20)) ** 2 * float(np.sum(_WINDOW_FN**2)) * _BINS
# Band powers → mean-square power relative to full scale (as gateway/media/vad.py's frame_power).
_TO_FULL_SCALE = 1.0 / (float(np.sum(_WINDOW_FN**2)) * FRAME_SAMPLES * 32768.0**2 / 2)


def band_powers(frame: np.ndarray) -> np.ndarray:
    """Power per band of one 20 ms 16 kHz frame (int16 scale)."""
    spec = np.abs(np.fft.rfft(frame.astype(np.float64) * _WINDOW_FN)) ** 2
    return np.add.reduceat(spec[: _EDGES[-1]], _EDGES[:-1])


class EchoBound:
    """Feed every sent frame (`far`) and every heard frame (`near`) in tick order; `unexplained`
    says whether the last `WINDOW` heard frames exceed what any echo of the sent audio could be."""

    __slots__ = ("_far", "_sent", "_heard", "_noise", "_noise_at", "_ratios", "_ratio_at", "_quiet", "_quiet_at", "gains", "unexplained", "echo_free")

    def __init__(self) -> None:
        self._far = np.zeros((_HISTORY, BANDS))  # oldest first; the last row is the newest sent frame
        self._sent = np.zeros(_HISTORY)  # the same frames' total power
        self._heard = np.zeros((WINDOW, BANDS))
        self._noise = np.full((NOISE_FRAMES, BANDS), np.inf)
        self._noise_at = 0
        self._quiet = np.full(NOISE_FRAMES, np.inf)  # heard power of frames without any agent audio in reach
        self._quiet_at = 0
        self._ratios = np.full((GAIN_FRAMES, LAGS + 1), np.nan)  # heard / sent power, per lag (0 first)
        self._ratio_at = 0
        self.gains = np.full(LAGS + 1, 10 ** (SLACK_DB / 10))  # per lag (0 first): the most the echo may pass
        self.unexplained = False
        self.echo_free = False

    def far(self, frame: np.ndarray) -> None:
        self._far[:-1] = self._far[1:]
        self._far[-1] = band_powers(frame)
        self._sent[:-1] = self._sent[1:]
        self._sent[-1] = self._far[-1].sum()

    def near(self, frame: np.ndarray, judge: bool = True) -> bool:
        """`judge`: decide `unexplained` for this frame (~0.1 ms; only the warm-up needs it —
        otherwise the gain is learned from every frame, the low quantile skipping the caller)."""
        p = band_powers(frame)
        self._heard[:-1] = self._heard[1:]
        self._heard[-1] = p
        self._noise[self._noise_at] = p
        self._noise_at = (self._noise_at + 1) % NOISE_FRAMES
        self.unexplained = self._judge() if judge else False
        if not self.unexplained:
            self._learn_gain(max(float(p.sum()) - self._line_noise(float(p.sum())), 0.0))
        return self.unexplained

    def _line_noise(self, heard: float) -> float:
        """The line's noise power: learned only from frames no echo could be in (the agent
        silent for the whole echo reach) — under a continuous greeting the quietest heard
        frame is echo, not noise. The quietest such frame of the last second, scaled up to a
        typical one (x1.3 for white noise, measured; coloured noise has fewer degrees of
        freedom). Nothing learned yet: 0."""
        if self._sent.max() * _TO_FULL_SCALE < FAR_ACTIVE:
            self._quiet[self._quiet_at] = heard
            self._quiet_at = (self._quiet_at + 1) % NOISE_FRAMES
        quietest = float(self._quiet.min())
        return NOISE_TYPICAL * quietest if np.isfinite(quietest) else 0.0

    def _learn_gain(self, heard: float) -> None:
        """`heard`: power above the noise floor."""
        # Sent power at lag d: the quieter of the two frames the echo (delays are not whole
        # frames) mostly comes from — heard >= gain * that, whenever the caller is silent.
        sent = self._sent
        pairs = np.minimum(sent[1:], sent[:-1])[::-1][: LAGS + 1]  # lag 0 first
        active = pairs * _TO_FULL_SCALE >= FAR_ACTIVE
        if not active.any():
            return
        self._ratios[self._ratio_at] = np.where(active, heard / np.maximum(pairs, 1e-9), np.nan)
        self._ratio_at = (self._ratio_at + 1) % GAIN_FRAMES
        if self._ratio_at % GAIN_EVERY:
            return
        counts = np.sum(~np.isnan(self._ratios), axis=0)
        known = counts >= GAIN_MIN_SAMPLES
        if not known.any():
            return
        ranked = np.sort(self._ratios, axis=0)  # NaN last (np.nanpercentile costs ~1 ms here)
        low = ranked[(counts - 1) * GAIN_QUANTILE // 100, np.arange(LAGS + 1)]
        self.gains[known] = np.minimum(low[known] * 10 ** (MARGIN_DB / 10), 10 ** (SLACK_DB / 10))
        loudest_db = 10 * np.log10(float(self.gains.max()) + 1e-30)
        if self.echo_free:
            self.echo_free = loudest_db <= ECHO_RETURNS_DB
        else:
            self.echo_free = bool(known.all()) and loudest_db <= ECHO_FREE_DB

    def _judge(self) -> bool:
        floor = np.maximum(self._noise.min(axis=0) * 10 ** (NOISE_MARGIN_DB / 10), ABS_FLOOR)
        counted = self._heard > floor  # (WINDOW, BANDS)
        n = int(counted.sum())
        if n < MIN_CELLS:
            return False
        # envelope[j]: the most each band sent over far rows j..j+TAIL (a frame and its reverb).
        envelope = sliding_window_view(self._far, TAIL + 1, axis=0).max(axis=-1)
        # For lag d, the heard window lines up with envelope rows ending d rows before the newest.
        windows = sliding_window_view(envelope, WINDOW, axis=0)  # (rows, BANDS, WINDOW)
        bounds = windows[-(LAGS + 1) :].transpose(0, 2, 1) * self.gains[::-1, None, None]  # lags LAGS..0
        beyond = (self._heard[None] > bounds) & counted[None]
        return bool(beyond.sum(axis=(1, 2)).min() >= UNEXPLAINED_FRACTION * n)
