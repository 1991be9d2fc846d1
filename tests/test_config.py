"""Config and dialplan files: valid ones load, bad ones fail naming the file and line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from gateway.config import load_config
from gateway.dialplan import load_dialplan
from gateway.tomlfile import ConfigError

ROOT = Path(__file__).resolve().parents[1]


def write(tmp_path: Path, name: str, text: str) -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def test_bundled_default_dialplan_loads() -> None:
    plan = load_dialplan(ROOT / "dialplans" / "default.toml")
    assert plan.route("1000") is not None


def test_dialplan_routes_first_match_and_prefixes(tmp_path: Path) -> None:
    p = write(tmp_path, "d.toml", """
[defaults]
greeting = ""
[[entry]]
name = "sales"
numbers = ["+4420*", "sales"]
[[entry]]
name = "support"
numbers = ["2000"]
ring_ms = 500
""")
    plan = load_dialplan(p)
    assert plan.route("+442071234567").name == "sales"
    assert plan.route("sales").name == "sales"
    assert plan.route("2000").ring_ms == 500
    assert plan.route("2000").greeting == ""  # inherited from [defaults]
    assert plan.route("3000") is None


@pytest.mark.parametrize(
    "body, line, words",
    [
        ('[[entry]]\nname = "a"\nagent = "robot"\n', 3, "unknown agent"),
        ('[[entry]]\nname = "a"\n\n[[entry]]\nname = "b"\nring_ms = "soon"\n', 6, "expected int"),
        ('[[entry]]\nname = "a"\nnumbrs = ["1"]\n', 3, "unknown key"),
        ('[[entry]]\nname = "a"\n[[entry]]\nname = "a"\n', 4, "duplicate"),
        ('[[entry]]\nname = "a"\ntransfer_target = "reception"\n', 3, "sip:"),
        ('[[entry]]\nname = "a"\nnumbers = [\n', 3, "TOML syntax"),
        ('[[entry]]\nname = "a"\ngreeting = "/no/such.wav"\n', 3, "greeting"),
        ('[[entry]]\nname = "a"\nagent = "model"\npitch_semitones = 20.0\n', 4, "one octave"),
        ('[[entry]]\nname = "a"\nspeaking_rate = 0\n', 3, "0.5-2.0"),
        ('[[entry]]\nname = "a"\nagent = "receptionist"\nvoice = "robot"\n', 4, "prompts, model"),
    ],
)
def test_bad_dialplan_names_the_line(tmp_path: Path, body: str, line: int, words: str) -> None:
    p = write(tmp_path, "bad.toml", body)
    with pytest.raises(ConfigError) as err:
        load_dialplan(p)
    assert err.value.line == line, str(err.value)
    assert words in str(err.value)
    assert str(err.value).startswith(f"{p}:{line}:")


@pytest.mark.parametrize(
    "body, line, words",
    [
        ("[sip]\nport = 70000\n", 2, "1-65535"),
        ("[sip]\nhost = \"127.0.0.1\"\ncodecs = [\"OPUS/48000\"]\n", 3, "codecs"),
        ("[http]\nport = 8080\n[sip.jitter]\nmin_pre_ms = 200\nmax_pre_ms = 100\n", 4, "max_pre_ms"),
        ("[engine]\nslots = 0\n", 2, "slots"),
        ("[sipp]\nport = 1\n", 1, "unknown key"),
        ("[sip.register]\nenabled = true\nregistrar = \"pbx\"\n", 3, "sip: URI"),
    ],
)
def test_bad_config_names_the_line(tmp_path: Path, body: str, line: int, words: str) -> None:
    p = write(tmp_path, "bad.toml", body)
    with pytest.raises(ConfigError) as err:
        load_config(p)
    assert err.value.line == line, str(err.value)
    assert words in str(err.value)


def test_serve_with_a_bad_config_fails_at_start_naming_the_line(tmp_path: Path) -> None:
    plan = write(tmp_path, "plan.toml", '[[entry]]\nname = "x"\non_hold = "music"\n')
    cfg = write(tmp_path, "cfg.toml", f'dialplan = "{plan}"\n')
    out = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "serve", "--config", str(cfg)],
        capture_output=True, text=True, timeout=30, cwd=ROOT,
    )
    assert out.returncode == 2
    assert f"{plan}:3:" in out.stderr and "on_hold" in out.stderr


def test_relative_dialplan_path_is_relative_to_the_config(tmp_path: Path) -> None:
    write(tmp_path, "plan.toml", '[[entry]]\nname = "x"\n')
    cfg = load_config(write(tmp_path, "cfg.toml", 'dialplan = "plan.toml"\n'))
    assert Path(cfg.dialplan) == tmp_path / "plan.toml"
