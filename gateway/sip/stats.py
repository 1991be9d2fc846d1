"""Per-call RTP and jitter-buffer statistics read from pjmedia, and their metrics."""

from __future__ import annotations

from typing import Any

import pjsua2 as pj

from gateway import metrics


def read_stream_stats(call: pj.Call) -> dict[str, Any]:
    """Jitter-buffer delay/loss/discard/PLC and RTCP receive figures of the call's audio."""
    try:
        st = call.getStreamStat(0)
    except pj.Error:
        return {}
    jb, rx = st.jbuf, st.rtcp.rxStat
    return {
        "jb_delay_avg_ms": int(jb.avgDelayMsec),
        "jb_delay_min_ms": int(jb.minDelayMsec),
        "jb_delay_max_ms": int(jb.maxDelayMsec),
        "jb_delay_dev_ms": int(jb.devDelayMsec),
        "jb_prefetch_frames": int(jb.prefetch),
        "jb_lost": int(jb.lost),  # frames concealed by PLC because they never arrived
        "jb_discard": int(jb.discard),  # frames dropped: late or too many
        "jb_empty": int(jb.empty),  # gets from an empty buffer (also concealed)
        "rx_packets": int(rx.pkt),
        "rx_lost": int(rx.loss),
        "rx_reorder": int(rx.reorder),
        "rx_jitter_mean_us": int(rx.jitterUsec.mean),
    }


def record_call_stats(stats: dict[str, Any]) -> None:
    if not stats:
        return
    metrics.JB_DELAY.observe(stats["jb_delay_avg_ms"])
    for kind in ("lost", "discard", "empty"):
        metrics.JB_FRAMES.labels(kind).inc(stats[f"jb_{kind}"])
    metrics.RTP_LOSS.inc(max(0, stats["rx_lost"]))
