"""Our codec choice in SDP answers: wideband first, otherwise the offerer's order.

pjmedia's negotiator follows the *offerer's* codec order, so a phone offering PCMU before
G.722 would get narrowband audio. Before negotiation (pjsua2's onCallSdpCreated) we cut
our local SDP down to one codec plus telephone-event: the first offered wideband codec we
have enabled, else the first offered narrowband one (G.711 µ-law or A-law are equal to us,
so the offerer's preference decides).
"""

from __future__ import annotations

import re

STATIC_PT = {"0": "PCMU/8000", "8": "PCMA/8000", "9": "G722/8000"}  # G.722's RTP clock is 8000
WIDEBAND = {"G722/8000"}
_RTPMAP = re.compile(r"^a=(?:rtpmap|fmtp|rtcp-fb):(\d+)[\s/]", re.IGNORECASE)


def _codec_names(lines: list[str]) -> dict[str, str]:
    """payload type → "NAME/clock" for the audio section's rtpmaps (and static types)."""
    names: dict[str, str] = {}
    for line in lines:
        if line.startswith("m=audio"):
            for pt in line.split()[3:]:
                if pt in STATIC_PT:
                    names[pt] = STATIC_PT[pt]
        m = re.match(r"^a=rtpmap:(\d+)\s+([^/\s]+)/(\d+)", line)
        if m:
            names[m.group(1)] = f"{m.group(2).upper()}/{m.group(3)}"
    return names


def _audio_section(sdp: str) -> tuple[list[str], int, int]:
    lines = sdp.replace("\r\n", "\n").split("\n")
    start = next((i for i, l in enumerate(lines) if l.startswith("m=audio")), -1)
    if start < 0:
        return lines, -1, -1
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("m=")), len(lines))
    return lines, start, end


def prefer_codec(local_sdp: str, remote_sdp: str, preference: list[str]) -> str:
    """`preference` holds config names ("G722/16000", "PCMU/8000", ...)."""
    rlines, rs, re_ = _audio_section(remote_sdp)
    llines, ls, le = _audio_section(local_sdp)
    if rs < 0 or ls < 0:
        return local_sdp
    remote = _codec_names(rlines[rs:re_])
    offered = [remote[pt] for pt in rlines[rs].split()[3:] if pt in remote]  # offerer's order
    enabled = [p.replace("G722/16000", "G722/8000") for p in preference]
    usable = [c for c in offered if c in enabled]
    chosen = next((c for c in usable if c in WIDEBAND), usable[0] if usable else None)
    if chosen is None:
        return local_sdp
    names = _codec_names(llines[ls:le])
    keep = {pt for pt, n in names.items() if n == chosen or n.startswith("TELEPHONE-EVENT/")}
    mline = llines[ls].split()
    llines[ls] = " ".join(mline[:3] + [pt for pt in mline[3:] if pt in keep])
    section = [
        l for l in llines[ls + 1 : le] if not ((m := _RTPMAP.match(l)) and m.group(1) not in keep)
    ]
    out = llines[:ls + 1] + section + llines[le:]
    return "\r\n".join(out)
