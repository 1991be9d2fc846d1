"""The echo canceller's warm-up: a stricter speech-start gate until the canceller has shown it works.

AEC3 needs a second or two of the agent's voice *and its echo* to find the echo path (more
when the echo comes back late: ~2 s at 400-500 ms); until then its output still carries the
echo at nearly full level and a speech detector would take the agent's own greeting for the
caller. So, while the warm-up lasts, speech may only start from a frame no more than
`margin_db` below the loudest frame sent in the last 600 ms: a caller can still barge in on
the greeting by talking up; its echo cannot. And speech may start from any frame that no echo
of the sent audio could explain (gateway/media/echo_bound.py): a caller talking at a normal
level over the greeting — on an echo-free line the canceller has nothing to converge on, so
without this the gate would stay for as long as the caller keeps talking.

The warm-up ends on evidence, not on a timer: once the canceller has removed at least
`erle_db` (input vs output power) from two 0.5 s windows in a row of frames heard while the
agent talked, nobody was detected talking and the input reached the detector's energy gate
(quieter frames cannot start speech anyway), or once 2 s of agent audio brought nothing
back above that gate (a line with no echo to speak of). If the canceller never converges (an
echo delay beyond its ~500 ms reach) the gate simply stays: no false barge-ins, louder
callers needed.
"""

from __future__ import annotations

import numpy as np

from gateway.media.echo_bound import EchoBound
from gateway.media.vad import frame_dbfs, frame_power

FAR_ACTIVE_DBFS = -50.0  # a sent frame this loud is agent audio (its echo may be in the next 600 ms)
FAR_HISTORY = 30  # frames (600 ms): the echo comes back up to this late and still counts
WINDOW = 25  # loud heard frames (0.5 s) per convergence check
PASSES = 2  # windows in a row: one good half second can be luck
QUIET_FRAMES = 100  # 2 s of agent audio with nothing heard above the gate: no echo


class AecWarmup:
    __slots__ = ("erle_db", "margin_db", "done", "bound", "_gate", "_far", "_at", "_sent", "_n", "_mic", "_out", "_passed", "_quiet")

    def __init__(self, erle_db: float, margin_db: float, gate_dbfs: float, bound: EchoBound, enabled: bool = True) -> None:
        """`bound`: the call's EchoBound, fed by the chain before each far() and near()."""
        self.erle_db, self.margin_db = erle_db, margin_db
        self.done = not enabled
        self.bound = bound
        self._gate = 10 ** (gate_dbfs / 10)
        self._far = [-120.0] * FAR_HISTORY
        self._at = 0
        self.restart()
        self.done = not enabled

    def restart(self) -> None:
        """Warm up again (an echo appeared on a line that had none: the canceller starts cold)."""
        self.done = False
        self._sent = 0  # agent frames sent so far: the first echo may be 600 ms behind them
        self._n, self._mic, self._out = 0, 0.0, 0.0
        self._passed = 0  # consecutive windows that met the criterion
        self._quiet = 0  # agent frames in a row after which nothing loud came back

    def far(self, frame: np.ndarray) -> None:
        """The frame just sent (int16 samples)."""
        if self.done and not self.bound.echo_free:
            return
        level_dbfs = frame_dbfs(frame)
        self._far[self._at] = level_dbfs
        self._at = (self._at + 1) % FAR_HISTORY
        if level_dbfs >= FAR_ACTIVE_DBFS:
            self._sent += 1

    @property
    def floor_dbfs(self) -> float:
        """The level a frame must reach to start speech (-120: no extra gate). On an echo-free
        line (no canceller at work) the gate stays for what an echo could be while the agent's
        audio is within the echo's reach: an echo that appears there is not cancelled until
        the bound has seen enough of it. Its level is the agent's when the line was found
        echo-free (the chain stops feeding `far` then): following the agent's current level
        instead delayed greeting barge-ins on echo-free lines, p50 101 -> 121 ms wideband and
        101 -> 167 ms over G.711 (`talkover bench aec`)."""
        if self.bound.unexplained or (self.done and not (self.bound.echo_free and self.bound.agent_in_reach)):
            return -120.0
        return max(self._far) - self.margin_db

    def near(self, mic: np.ndarray, out: np.ndarray, in_speech: bool) -> None:
        """One heard frame (int16 samples) before and after the canceller."""
        if self.done:
            return
        if self.bound.echo_free:
            self.done = True  # nothing to cancel: the gate has nothing to protect against
            return
        if self.bound.unexplained or in_speech or self._sent < FAR_HISTORY or max(self._far) < FAR_ACTIVE_DBFS:
            return  # the caller's own speech says nothing about the echo
        mic_power, out_power = frame_power(mic), frame_power(out)
        if mic_power < self._gate:
            self._quiet += 1
            self.done = self._quiet >= QUIET_FRAMES
            return
        self._quiet = 0
        self._mic += mic_power
        self._out += out_power
        self._n += 1
        if self._n < WINDOW:
            return
        reduced = self._mic >= self._out * 10 ** (self.erle_db / 10)
        self._passed = self._passed + 1 if reduced else 0
        self.done = self._passed >= PASSES
        self._n, self._mic, self._out = 0, 0.0, 0.0
