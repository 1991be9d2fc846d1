"""Streaming sample-rate conversion (soxr) between a line rate and the chain's 16 kHz.

One `StreamResampler` per call and direction: soxr keeps filter state between chunks, so
frame-by-frame output equals converting the whole signal at once (no clicks at frame
edges). Same rate in and out is a pass-through.
"""

from __future__ import annotations

import numpy as np
import soxr


class StreamResampler:
    def __init__(self, rate_in: int, rate_out: int, quality: str = "HQ") -> None:
        self.rate_in, self.rate_out = rate_in, rate_out
        self._rs = None if rate_in == rate_out else soxr.ResampleStream(rate_in, rate_out, 1, dtype="int16", quality=quality)

    def process(self, samples: np.ndarray, last: bool = False) -> np.ndarray:
        """int16 mono in, int16 mono out; the output length varies by a sample or so per chunk."""
        if self._rs is None:
            return samples
        return self._rs.resample_chunk(np.ascontiguousarray(samples, dtype=np.int16), last=last)
