"""What one call's inbound chain costs per 20 ms frame, on a line that echoes and one that does not.

A conversation of alternating turns (agent 5 s, caller 5 s, the caller silent while the agent
talks) through an echo path, clocked frame by frame through gateway/media/inbound.py's
InboundChain (echo bound, AEC3 / noise suppression, speech detector); the CPU time of `far()` +
`process()` per frame, after the first 10 s (the line is judged by then). Side by side in the
same run: `aec_skip_echo_free` on (AEC3 left out while the line is echo-free: the default) and
off (AEC3 kept, fed silence as its reference).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from typing import Callable

import numpy as np

from engine.session import FRAME_SAMPLES
from gateway.bench.aec_corpus import EchoPath, EchoPathSpec, agent_turns, callers, to_int16
from gateway.config import MediaConfig
from gateway.media.inbound import InboundChain

TURN_S = 5.0
SETTLE_S = 10.0


@dataclass(frozen=True)
class CpuResult:
    path: str
    us_skip: float  # per frame, AEC3 left out while echo-free (the default)
    us_kept: float  # per frame, AEC3 kept and fed silence
    echo_free_share: float  # of the measured frames, those judged echo-free


def run(spec: EchoPathSpec, seconds: float) -> CpuResult:
    """Both chains get the same frames in the same loop, in alternating order, so that machine
    noise lands on both alike."""
    agent = np.concatenate(agent_turns())
    caller = np.concatenate([x for _, x, _ in callers()])
    frames = int(seconds * 50)
    path = EchoPath(spec, 16000, FRAME_SAMPLES, agent[: 8 * 16000])
    chains = [InboundChain(replace(MediaConfig(), aec_skip_echo_free=skip)) for skip in (True, False)]
    turn, settle = int(TURN_S * 50), int(SETTLE_S * 50)
    spent, free = [0, 0], 0
    for i in range(frames):
        agent_talks = (i // turn) % 2 == 0
        at = (i * FRAME_SAMPLES) % (len(agent) - FRAME_SAMPLES)
        sent = to_int16(agent[at : at + FRAME_SAMPLES]) if agent_talks else np.zeros(FRAME_SAMPLES, np.int16)
        heard = path.echo(sent.astype(np.float64) / 32768.0) + path.noise(FRAME_SAMPLES)
        if not agent_talks:
            ct = (i * FRAME_SAMPLES) % (len(caller) - FRAME_SAMPLES)
            heard = heard + caller[ct : ct + FRAME_SAMPLES] * 0.5
        pcm, far = to_int16(heard).tobytes(), sent.tobytes()
        for k in ((0, 1) if i % 2 else (1, 0)):
            t0 = time.perf_counter_ns()
            chains[k].far(far)
            chains[k].process(pcm, i * 0.02)
            if i >= settle:
                spent[k] += time.perf_counter_ns() - t0
        if i >= settle:
            free += chains[0].echo.echo_free
    n = max(frames - settle, 1)
    return CpuResult(spec.name, spent[0] / n / 1000, spent[1] / n / 1000, free / n)


def cpu_part(short: bool, step: Callable[[str], None] = lambda _: None) -> list[CpuResult]:
    seconds = 20.0 if short else 60.0
    specs = [EchoPathSpec(60, 60, "hybrid", noise_dbfs=-65, seed=31), EchoPathSpec(100, 6, "hybrid", seed=32)]
    out = []
    for spec in specs:
        out.append(run(spec, seconds))
        step(spec.name)
    print("\n== CPU of one call's inbound chain per 20 ms frame (echo bound + AEC3/NS + Silero detector) ==")
    print(f"{'echo path':<30}|{'AEC3 left out when echo-free':>30}{'AEC3 fed silence':>18}{'ratio':>7}{'echo-free':>10}")
    for r in out:
        ratio = r.us_skip / r.us_kept if r.us_kept else float("nan")
        print(f"{r.path:<30}|{r.us_skip:>27.0f} µs{r.us_kept:>15.0f} µs{ratio:>7.2f}{r.echo_free_share:>10.0%}")
    print("   echo-free = share of the measured frames the line was judged to bring none of the agent's audio back")
    return out
