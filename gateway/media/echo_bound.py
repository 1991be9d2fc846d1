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
above its own noise floor (a low quantile over the last second).
Clipping in the far phone spreads echo into bands the agent did not use; that is a minority
of cells, hence a fraction (`UNEXPLAINED_FRACTION`) rather than any one cell.

Heard audio beyond the learned gain but within `SLACK_DB` is ambiguous: a caller on a line
not yet known, or an echo that has just appeared (the far phone went to speakerphone, or its
echo starts late) that the gains learned earlier never saw. An echo follows the sent audio's
rise and fall band by band at one lag; a caller does not. So the last `CORR_FRAMES` heard
frames are correlated (log band powers, each band's mean removed) with the sent envelope at
every lag: above `CORR_ECHO` at some lag it is echo (and is learned from, so the gain
rises), below it over enough frames it is the caller; with too few, echo until shown
otherwise (a caller's onset over agent speech waits ~100 ms; a new echo never opens the gate).
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from engine.session import FRAME_SAMPLES, SAMPLE_RATE

LAGS = 30  # frames: the echo may come back up to 600 ms late (AEC3's own reach is ~500 ms)
TAIL = 4  # frames: reverberation carries a sent frame's energy ~100 ms on (20 dB down after that)
WINDOW = 3  # heard frames judged together (60 ms)
CORR_FRAMES = 16  # heard frames an ambiguous window is correlated over (320 ms)
CORR_ECHO = 0.75  # correlation with the sent audio at some lag that makes it echo (measured on the
#                   bench corpus: echo at ERL 10 dB median 0.92, another talker median 0.39, 95th pct 0.67)
CORR_MIN_FRAMES = 6  # fewer heard frames with >= 4 counted bands in CORR_FRAMES: keep it echo, wait
ECHO_RETURNS_WINDOWS = 16  # echo-like windows in a row at one lag (+-1) that end echo-free mode: a
#                           whole new window (consecutive windows share 15 of 16 frames)
SLACK_DB = 10.0  # how far a band may exceed the sent audio's bound and still be echo (nothing learned yet)
MARGIN_DB = 10.0  # above the learned gain of the echo path
GAIN_FRAMES = 50  # heard frames (of agent audio) the gain is learned over
GAIN_QUANTILE = 20  # percent: low enough to land in the caller's pauses
GAIN_EVERY = 5  # frames between updates of the learned gains (the ranking costs ~40 µs)
GAIN_MIN_SAMPLES = 15  # per lag, before the learned gain counts
ECHO_FREE_DB = -30.0  # every lag's learned gain below this: no echo on this line
ECHO_RETURNS_DB = -24.0  # any lag's gain above this: the echo is back (hysteresis)
FAR_ACTIVE = 10 ** (-50 / 10)  # mean-square power (full scale 1.0) of a sent frame that is agent audio
NOISE_MARGIN_DB = 10.0  # a cell counts when the heard band is this far above its noise floor
NOISE_RANK = 9  # noise floor per band: the 10th quietest of the last NOISE_FRAMES (a narrow band's
#                 power swings widely frame to frame: its minimum is ~1/50 of its mean)
NOISE_FRAMES = 50  # heard frames (1 s) the noise floor is taken over
NOISE_TYPICAL = 2.0  # a typical noise frame's power over the quietest of NOISE_FRAMES
UNEXPLAINED_FRACTION = 0.5  # of counted cells beyond the bound at every lag → not echo
MIN_CELLS = 8  # fewer counted cells than this: too little heard to judge

_EDGES_HZ = (100, 200, 300, 400, 510, 630, 770, 920, 1080, 1270, 1480, 1720, 2000, 2320, 2700, 3150, 3700, 4400, 5300, 6400, 7700)
_BIN_HZ = SAMPLE_RATE / FRAME_SAMPLES
_EDGES = np.array([round(f / _BIN_HZ) for f in _EDGES_HZ])
BANDS = len(_EDGES) - 1
_WINDOW_FN = np.hanning(FRAME_SAMPLES)
_HISTORY = LAGS + TAIL + CORR_FRAMES
_BINS = np.diff(_EDGES)
# Expected band power of white noise at -80 dBFS: quieter cells never count (digital silence).
ABS_FLOOR = (32768.0 * 10 ** (-80 / 20)) ** 2 * float(np.sum(_WINDOW_FN**2)) * _BINS
# Band powers → mean-square power relative to full scale (as gateway/media/vad.py's frame_power).
_TO_FULL_SCALE = 1.0 / (float(np.sum(_WINDOW_FN**2)) * FRAME_SAMPLES * 32768.0**2 / 2)


_ZERO_BANDS = np.zeros(BANDS)
_ZERO_BANDS.flags.writeable = False


def band_powers(frame: np.ndarray) -> np.ndarray:
    """Power per band of one 20 ms 16 kHz frame (int16 scale)."""
    if not frame.any():  # the agent is silent: most sent frames while the caller talks
        return _ZERO_BANDS
    spec = np.abs(np.fft.rfft(frame.astype(np.float64) * _WINDOW_FN)) ** 2
    return np.add.reduceat(spec[: _EDGES[-1]], _EDGES[:-1])


class EchoBound:
    """Feed every sent frame (`far`) and every heard frame (`near`) in tick order; `unexplained`
    says whether the last `WINDOW` heard frames exceed what any echo of the sent audio could be."""

    __slots__ = ("_far", "_far_log", "_env", "_sent_windows", "_far_log_spans", "_sent", "_heard", "_noise", "_noise_at", "_ratios", "_ratio_at", "_quiet", "_quiet_at", "gains", "unexplained", "echo_free", "echo_seen", "_echo_lag", "_echo_run", "agent_in_reach")

    def __init__(self) -> None:
        self._far = np.zeros((_HISTORY, BANDS))  # oldest first; the last row is the newest sent frame
        # _env[j]: the most each band sent over far rows j..j+TAIL (a frame and its reverb),
        # kept up to date one row per sent frame.
        self._env = np.zeros((_HISTORY - TAIL, BANDS))
        # Views made once (building them per frame cost ~40 µs): both arrays are only ever
        # updated in place. For lag d (LAGS first), the rows a heard window lines up with.
        self._sent_windows = sliding_window_view(self._env, WINDOW, axis=0)[-(LAGS + 1) :].transpose(0, 2, 1)
        self._far_log = np.zeros((_HISTORY, BANDS))  # log10(1 + _far), for the correlation
        self._far_log_spans = sliding_window_view(self._far_log, CORR_FRAMES, axis=0)[-(LAGS + 1) :].transpose(0, 2, 1)
        self._sent = np.zeros(_HISTORY)  # the same frames' total power
        self.agent_in_reach = False
        self._heard = np.zeros((CORR_FRAMES, BANDS))
        self._noise = np.full((NOISE_FRAMES, BANDS), np.inf)
        self._noise_at = 0
        self._quiet = np.full(NOISE_FRAMES, np.inf)  # heard power of frames without any agent audio in reach
        self._quiet_at = 0
        self._ratios = np.full((GAIN_FRAMES, LAGS + 1), np.nan)  # heard / sent power, per lag (0 first)
        self._ratio_at = 0
        self.gains = np.full(LAGS + 1, 10 ** (SLACK_DB / 10))  # per lag (0 first): the most the echo may pass
        self.unexplained = False
        self.echo_free = False
        self.echo_seen = False  # the last judged window correlated with the sent audio
        self._echo_lag, self._echo_run = -9, 0  # the lag it correlated at, and how many windows in a row

    def far(self, frame: np.ndarray) -> None:
        self._far[:-1] = self._far[1:]
        self._far[-1] = band_powers(frame)
        self._far_log[:-1] = self._far_log[1:]
        np.log10(self._far[-1] + 1.0, out=self._far_log[-1])
        self._env[:-1] = self._env[1:]
        np.max(self._far[-(TAIL + 1) :], axis=0, out=self._env[-1])
        self._sent[:-1] = self._sent[1:]
        self._sent[-1] = self._far[-1].sum()
        # Agent audio was sent within the echo's reach (and the correlation's span): what is
        # heard now could be its echo. Read by the chain, the warm-up gate and _line_noise.
        self.agent_in_reach = float(self._sent.max()) * _TO_FULL_SCALE >= FAR_ACTIVE

    def near(self, frame: np.ndarray, judge: bool = True) -> bool:
        """`judge`: decide `unexplained` for this frame (~25 µs more; the warm-up and echo-free
        mode need it — otherwise the gain is learned from every frame, the low quantile
        skipping the caller). Not judged, a frame also ends any run of echo-like windows."""
        p = band_powers(frame)
        self._heard[:-1] = self._heard[1:]
        self._heard[-1] = p
        self._noise[self._noise_at] = p
        self._noise_at = (self._noise_at + 1) % NOISE_FRAMES
        if judge:
            self.unexplained = self._judge()
        else:
            self.unexplained, self.echo_seen, self._echo_run = False, False, 0
        if self.echo_free and self._echo_run >= ECHO_RETURNS_WINDOWS:
            self._forget()  # an echo appeared: what was learned without it no longer holds
        if not self.unexplained:
            heard = float(p.sum())
            self._learn_gain(max(heard - self._line_noise(heard), 0.0))
        return self.unexplained

    def _forget(self) -> None:
        self.echo_free = False
        self.gains[:] = 10 ** (SLACK_DB / 10)
        self._ratios[:] = np.nan

    def _line_noise(self, heard: float) -> float:
        """The line's noise power: learned only from frames no echo could be in (the agent
        silent for the whole echo reach) — under a continuous greeting the quietest heard
        frame is echo, not noise. The quietest such frame of the last second, scaled up to a
        typical one (x1.3 for white noise, measured; coloured noise has fewer degrees of
        freedom). Nothing learned yet: 0."""
        if not self.agent_in_reach:
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
        self.echo_seen = False
        run, self._echo_run = self._echo_run, 0
        noise = np.partition(self._noise, NOISE_RANK, axis=0)[NOISE_RANK]
        floor = np.maximum(noise * 10 ** (NOISE_MARGIN_DB / 10), ABS_FLOOR)
        counted_all = self._heard > floor  # (CORR_FRAMES, BANDS)
        heard, counted = self._heard[-WINDOW:], counted_all[-WINDOW:]
        n = int(counted.sum())
        if n < MIN_CELLS:
            return False
        sent = self._sent_windows  # lags LAGS..0
        if self._beyond(heard, counted, sent * self.gains[::-1, None, None]) < UNEXPLAINED_FRACTION * n:
            return False  # within what the echo path has been seen to pass
        if self._beyond(heard, counted, sent * 10 ** (SLACK_DB / 10)) >= UNEXPLAINED_FRACTION * n:
            return True  # beyond any echo a passive line could return
        if int((counted_all.sum(axis=1) >= 4).sum()) < CORR_MIN_FRAMES:
            return False
        corr, lag = self._correlation(counted_all)
        self.echo_seen = corr >= CORR_ECHO
        if self.echo_seen:
            self._echo_run = run + 1 if abs(lag - self._echo_lag) <= 1 else 1
            self._echo_lag = lag
        return not self.echo_seen

    @staticmethod
    def _beyond(heard: np.ndarray, counted: np.ndarray, bounds: np.ndarray) -> int:
        """Counted cells beyond the bound, at the lag that explains most of them."""
        return int(((heard[None] > bounds) & counted[None]).sum(axis=(1, 2)).min())

    def _correlation(self, counted: np.ndarray) -> tuple[float, int]:
        """The best correlation over lags of heard and sent log band powers (per-band means
        removed), and its lag. The sent frames themselves, not their reverberant envelope:
        the envelope's smoothing cost more echo correlation than it gained (measured)."""
        k = np.maximum(counted.sum(axis=0), 1)  # counted frames per band: means over those only
        x = np.log10(self._heard + 1.0)
        x = np.where(counted, x - np.where(counted, x, 0.0).sum(axis=0) / k, 0.0)
        y = self._far_log_spans  # lags LAGS..0
        y = np.where(counted[None], y - np.where(counted[None], y, 0.0).sum(axis=1, keepdims=True) / k, 0.0)
        num = (x[None] * y).sum(axis=(1, 2))
        den = np.sqrt((x * x).sum() * (y * y).sum(axis=(1, 2))) + 1e-12
        r = num / den
        best = int(r.argmax())
        return float(r[best]), LAGS - best
