"""Dialplans: which called number (or SIP user) reaches which agent, and how it behaves.

A dialplan is a TOML file with one `[[entry]]` table per route; the first entry whose
`numbers` match the called number wins; no match → the INVITE gets 404. Patterns: an exact
number or user (`"1000"`, `"sales"`), a prefix ending in `*` (`"+4420*"`), or `"*"` for
anything. An optional `[defaults]` table gives values every entry inherits. Example and
field reference: dialplans/README.md. A bad file fails at start naming the line.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gateway.tomlfile import ConfigError, TomlSource, build

VOICES = ("prompts", "model", "live")  # the receptionist's voice
AGENTS = ("echo", "silent", "receptionist", "model", "moshi")  # the engine's agents; "model" and "moshi" need [engine] model


@dataclass
class DialplanEntry:
    name: str = ""
    numbers: list[str] = field(default_factory=lambda: ["*"])
    agent: str = "echo"  # which engine agent answers
    greeting: str = "chime"  # built-in prompt played on answer ("" = none)
    ring_ms: int = 0  # 180 Ringing for this long before the 200
    interruptible: bool = True  # may the caller barge in on the agent?
    barge_in_min_ms: int = 800  # voiced caller speech this long commits a barge-in; shorter resumes
    # (800: an "mm-hm" carries ~400-700 ms of voice, bench interruption; the pause at speech-start
    # already silenced the agent, so a later commit costs the caller nothing audible)
    barge_in_join_ms: int = 600  # speech this soon after a resumed barge-in continues its voiced count
    end_of_turn_ms: int = 200  # silence after the VAD's speech-stop that ends the caller's turn
    vad_threshold_dbfs: float = 0.0  # 0 = the media config's; lower = more sensitive
    on_hold: str = "freeze"  # freeze (keep the conversation, say nothing) | hangup
    max_hold_s: float = 600.0  # hung up after this long on hold
    max_call_s: float = 900.0
    transfer_target: str = ""  # SIP URI for blind transfer (REFER); "" = no transfer
    transfer_digit: str = ""  # DTMF digit that asks the agent to transfer ("" = none)
    speaking_rate: float = 1.0  # model agent: > 1 speaks faster (the reply's phoneme timeline)
    pitch_semitones: float = 0.0  # model agent: its voice shifted up (+) or down (-)
    voice: str = "prompts"  # receptionist: "prompts" (piper, pre-rendered), "model" (talkover's unit LM +
    #                         vocoder, pre-rendered) or "live" (the unit LM in the engine's batched step)

    def validate(self) -> tuple[str, str] | None:
        if not self.name:
            return "name", "every entry needs a name"
        if not self.numbers or any(not n or ("*" in n[:-1]) for n in self.numbers):
            return "numbers", "patterns are exact numbers, a prefix ending in '*', or '*'"
        if self.agent not in AGENTS:
            return "agent", f"unknown agent {self.agent!r} (known: {', '.join(AGENTS)})"
        if self.on_hold not in ("freeze", "hangup"):
            return "on_hold", "must be 'freeze' or 'hangup'"
        if self.ring_ms < 0 or self.barge_in_min_ms < 0 or self.barge_in_join_ms < 0 or self.end_of_turn_ms < 20:
            return "ring_ms", "times must be positive (end_of_turn_ms >= 20)"
        if self.transfer_target and not self.transfer_target.startswith(("sip:", "sips:", "tel:")):
            return "transfer_target", "must be a sip:, sips: or tel: URI"
        if self.greeting not in ("", "chime", "long") and not Path(self.greeting).is_file():
            return "greeting", "must be 'chime', 'long', '' or the path of a 16 kHz mono WAV file"
        if self.transfer_digit and self.transfer_digit not in "0123456789*#":
            return "transfer_digit", "must be one DTMF digit"
        if not 0.5 <= self.speaking_rate <= 2.0:
            return "speaking_rate", "must lie within 0.5-2.0 (1.0 = the voice's own rate)"
        if not -12.0 <= self.pitch_semitones <= 12.0:
            return "pitch_semitones", "must lie within -12 and +12 (one octave)"
        if self.voice not in VOICES:
            return "voice", f"must be one of {', '.join(VOICES)}"
        return None

    def matches(self, called: str) -> bool:
        for pattern in self.numbers:
            if pattern == "*" or pattern == called:
                return True
            if pattern.endswith("*") and called.startswith(pattern[:-1]):
                return True
        return False

    def agent_settings(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class Dialplan:
    path: str
    entries: list[DialplanEntry]

    def route(self, called: str) -> DialplanEntry | None:
        return next((e for e in self.entries if e.matches(called)), None)

    def by_name(self, name: str) -> DialplanEntry | None:
        return next((e for e in self.entries if e.name == name), None)


def load_dialplan(path: str | Path) -> Dialplan:
    src = TomlSource(path)
    unknown = set(src.data) - {"defaults", "entry"}
    if unknown:
        key = sorted(unknown)[0]
        raise src.error((key,), "unknown table (a dialplan has [defaults] and [[entry]] tables)")
    defaults = src.data.get("defaults", {})
    build(DialplanEntry, {**defaults, "name": "defaults"}, src, ("defaults",))
    raw_entries = src.data.get("entry", [])
    if not isinstance(raw_entries, list) or not raw_entries:
        raise ConfigError(path, None, "a dialplan needs at least one [[entry]]")
    entries: list[DialplanEntry] = []
    for i, raw in enumerate(raw_entries):
        if not isinstance(raw, dict):
            raise src.error(("entry",), "each entry must be a table")
        entry = build(DialplanEntry, {**defaults, **raw}, src, ("entry", i))
        if any(e.name == entry.name for e in entries):
            raise src.error(("entry", i, "name"), f"duplicate entry name {entry.name!r}")
        entries.append(entry)
    return Dialplan(str(path), entries)
