"""The training curve PNG written beside a checkpoint."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def plot_history(history: Any, path: Path) -> Path | None:
    from gateway.bench.plotting import pyplot, save

    plt = pyplot()
    if plt is None or not history.step:
        return None
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.6))
    ax1.plot(history.step, history.loss, label="total loss")
    ax1.plot(history.step, history.mel, label="log-mel L1")
    ax1.set_xlabel("step")
    ax1.set_yscale("log")
    ax1.legend()
    ax1.set_title("codec training loss")
    ax2.plot(history.step, [100 * u for u in history.usage])
    ax2.set_xlabel("step")
    ax2.set_ylabel("% of codebook entries used per batch")
    ax2.set_title("RVQ usage")
    save(fig, path)
    return path
