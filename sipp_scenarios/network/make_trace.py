"""Writes wifi_spikes.trace, the example trace of `talkover bench network` (format in
gateway/bench/impair.py): 30 s of 20 ms packets on a Wi-Fi-like link, reproducible (seeded).

- base delay 15 ms with ±4 ms jitter;
- every 3-6 s a delay spike (a retransmitting radio or a power-save wake-up): the delay jumps
  to 80-180 ms and drains at 20 ms per packet, so the packets held behind it arrive in a bunch;
- 1 % random loss and, twice in the trace, a burst of 4-7 lost packets.

Run: .venv/bin/python sipp_scenarios/network/make_trace.py
"""

from __future__ import annotations

import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from gateway.bench.impair import EXAMPLE_TRACE, Fate, write_trace  # noqa: E402

PACKETS = 1500  # 30 s at 20 ms
SEED = 11


def make(rng: random.Random) -> list[Fate]:
    fates: list[Fate] = []
    next_spike = rng.randint(150, 300)
    spike = 0.0
    bursts = {rng.randint(200, 700): rng.randint(4, 7), rng.randint(800, 1400): rng.randint(4, 7)}
    burst_left = 0
    for i in range(PACKETS):
        if i == next_spike:
            spike = rng.uniform(80, 180)
            next_spike = i + rng.randint(150, 300)
        delay = 15 + rng.uniform(-4, 4) + spike
        spike = max(0.0, spike - 20)
        burst_left = bursts.get(i, burst_left)
        if burst_left > 0:
            burst_left -= 1
            fates.append(Fate(True))
        elif rng.random() < 0.01:
            fates.append(Fate(True))
        else:
            fates.append(Fate(False, delay))
    return fates


def main() -> None:
    fates = make(random.Random(SEED))
    write_trace(EXAMPLE_TRACE, fates, __doc__.split("\n\n")[0] + f"\nseed {SEED}, {PACKETS} packets; '-' = lost")
    print(f"wrote {EXAMPLE_TRACE}: {sum(f.lost for f in fates)} of {len(fates)} lost")


if __name__ == "__main__":
    main()
