"""deploy/: systemd units, container images, Kubernetes manifests and PBX snippets are valid.

None of them can run here (no systemd as PID 1, no Docker, no cluster, no Asterisk or
FreeSWITCH), so each is checked as far as an offline tool or parser goes: `systemd-analyze
verify`, the Kubernetes JSON schemas (strict), BuildKit's Dockerfile parser, an XML parser,
an Asterisk-config reader; the TOML they carry goes through talkover's own config loader.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

from gateway.config import load_config
from gateway.supervisor import kamailio_cli

REPO = Path(__file__).resolve().parents[1]
DEPLOY = REPO / "deploy"
INSTALL_PREFIX = "/opt/talkover"  # where deploy/systemd/README.md installs the checkout


# ---------------------------------------------------------------- systemd

def _systemd_analyze_works() -> bool:
    exe = shutil.which("systemd-analyze")
    if exe is None:
        return False
    try:
        return subprocess.run([exe, "--version"], capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


needs_systemd_analyze = pytest.mark.skipif(not _systemd_analyze_works(), reason="systemd-analyze cannot run here")


def _verify(unit_dir: Path, *units: str) -> str:
    done = subprocess.run(["systemd-analyze", "verify", *(str(unit_dir / u) for u in units)],
                          capture_output=True, text=True, timeout=60)
    lines = [ln for ln in (done.stdout + done.stderr).splitlines() if str(unit_dir) in ln or "talkover" in ln]
    return "\n".join(lines) + ("" if done.returncode == 0 else f"\n(rc={done.returncode})")


@needs_systemd_analyze
def test_systemd_units_verify_cleanly(tmp_path: Path) -> None:
    units = sorted(p.name for p in (DEPLOY / "systemd").glob("*.service"))
    assert {"talkover.service", "talkover@.service", "talkover-kamailio.service"} <= set(units)
    for name in units:  # the units name the install prefix; point it at this checkout
        (tmp_path / name).write_text((DEPLOY / "systemd" / name).read_text().replace(INSTALL_PREFIX, str(REPO)))
    to_check = [u.replace("@.service", "@0.service") for u in units]
    assert _verify(tmp_path, *to_check) == "", "systemd-analyze verify complained"

    # the check itself catches mistakes in this container (not a no-op)
    bad = (tmp_path / "talkover.service").read_text().replace("KillMode=mixed", "KillMode=mixd\nRestartSecs=2")
    (tmp_path / "broken.service").write_text(bad)
    complaint = _verify(tmp_path, "broken.service")
    assert "mixd" in complaint and "RestartSecs" in complaint


def test_systemd_units_run_what_exists() -> None:
    for unit in (DEPLOY / "systemd").glob("*.service"):
        text = unit.read_text()
        for cmd in re.findall(r"^Exec\w+=(\S+)", text, re.M):
            local = Path(cmd.replace(INSTALL_PREFIX, str(REPO)))
            assert local.exists(), f"{unit.name}: {cmd} does not exist in a checkout installed by deploy/install.sh"
        for module in re.findall(r"-m ([\w.]+)", text):
            assert (REPO / (module.replace(".", "/") + ".py")).exists(), f"{unit.name}: no module {module}"
        stop = re.search(r"^TimeoutStopSec=(\d+)", text, re.M)
        assert stop and int(stop.group(1)) > 10


# ---------------------------------------------------------------- containers

DOCKER_INSTRUCTIONS = {"FROM", "ARG", "ENV", "RUN", "COPY", "ADD", "WORKDIR", "USER", "EXPOSE", "HEALTHCHECK",
                       "ENTRYPOINT", "CMD", "STOPSIGNAL", "LABEL", "VOLUME", "SHELL", "ONBUILD"}


@pytest.mark.parametrize("name", ["Dockerfile", "Dockerfile.cuda"])
def test_dockerfiles_parse_and_reference_real_files(name: str) -> None:
    dockerfile = pytest.importorskip("dockerfile")
    commands = dockerfile.parse_file(str(DEPLOY / "container" / name))
    kinds = [c.cmd.upper() for c in commands]
    assert set(kinds) <= DOCKER_INSTRUCTIONS, f"unknown instructions: {set(kinds) - DOCKER_INSTRUCTIONS}"
    assert kinds[0] in ("FROM", "ARG") and "FROM" in kinds
    for c in commands:
        if c.cmd.upper() in ("COPY", "ADD") and not any(f.startswith("--from") for f in c.flags):
            *sources, _dest = c.value
            for src in sources:  # the build context is the repository root
                assert (REPO / src).exists(), f"{name} line {c.start_line}: {src} is not in the repository"
    user = [c.value[0] for c in commands if c.cmd.upper() == "USER"]
    assert user and user[-1] not in ("root", "0"), "the image must not run as root"
    health = next(c for c in commands if c.cmd.upper() == "HEALTHCHECK")
    assert "/healthz" in health.original
    exposed = {v for c in commands if c.cmd.upper() == "EXPOSE" for v in c.value}
    assert {"5060/udp", "5060/tcp", "8080/tcp"} <= exposed
    entry = next(c for c in commands if c.cmd.upper() == "ENTRYPOINT")
    cmd = next(c for c in commands if c.cmd.upper() == "CMD")
    assert entry.json and cmd.json, "exec form, so SIGTERM reaches talkover (drain) and not a shell"
    assert list(entry.value) + list(cmd.value)[:1] == ["talkover", "serve"]
    assert any("deploy/install.sh" in c.original for c in commands if c.cmd.upper() == "RUN")
    if name.endswith("cuda"):
        assert "nvidia/cuda" in commands[kinds.index("FROM")].value[0]


def test_container_default_config_loads() -> None:
    cfg = load_config(DEPLOY / "container" / "talkover.toml")
    assert (cfg.sip.host, cfg.http.host, cfg.http.port) == ("0.0.0.0", "0.0.0.0", 8080)


# ---------------------------------------------------------------- Kubernetes

def _manifests() -> list[dict[str, Any]]:
    yaml = pytest.importorskip("yaml")
    docs = []
    for path in sorted((DEPLOY / "k8s").glob("*.yaml")):
        docs += [d for d in yaml.safe_load_all(path.read_text()) if d]
    return docs


def _find(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    return next(d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name)


def test_kubernetes_manifests_match_the_schemas() -> None:
    kv = pytest.importorskip("kubernetes_validate")
    docs = _manifests()
    assert len(docs) >= 6
    for doc in docs:
        try:
            kv.validate(doc, "1.30.0", strict=True)  # strict: unknown fields are errors too
        except kv.ValidationError as exc:
            pytest.fail(f"{doc['kind']} {doc['metadata']['name']}: {exc}")
    with pytest.raises(kv.ValidationError):  # and the check does catch a typo
        broken = _find(docs, "Deployment", "talkover-gateway")
        broken["spec"]["template"]["spec"]["containers"][0]["readinessProbes"] = {}
        kv.validate(broken, "1.30.0", strict=True)


def test_gateway_pool_manifest_semantics(tmp_path: Path) -> None:
    docs = _manifests()
    gateway = _find(docs, "Deployment", "talkover-gateway")
    pod = gateway["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    probe = container["readinessProbe"]["httpGet"]
    assert probe["path"] == "/healthz" and ports[probe["port"]] == 8080
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1, "one engine per GPU"
    assert pod["hostNetwork"] is True, "callers send RTP straight to the worker's advertised address"

    # the config the pods mount loads, and the grace period outlasts its drain window
    config = _find(docs, "ConfigMap", "talkover-config")["data"]
    (tmp_path / "talkover.toml").write_text(config["talkover.toml"])
    cfg = load_config(tmp_path / "talkover.toml")
    assert cfg.http.port == 8080 and cfg.http.host == "0.0.0.0"
    assert ports["sip-udp"] == cfg.sip.port
    assert pod["terminationGracePeriodSeconds"] > cfg.supervisor.drain_s
    assert _find(docs, "PodDisruptionBudget", "talkover-gateway")["spec"]["maxUnavailable"] == 1


@pytest.mark.skipif(shutil.which("kamailio", path="/usr/sbin:/usr/bin") is None, reason="kamailio not installed")
def test_front_door_manifest_config_renders_a_valid_kamailio_config(tmp_path: Path) -> None:
    docs = _manifests()
    frontdoor = _find(docs, "Deployment", "talkover-frontdoor")
    (container,) = frontdoor["spec"]["template"]["spec"]["containers"]
    assert container["command"][-1] == "gateway.supervisor.kamailio_cli"
    service = _find(docs, "Service", "talkover-sip")
    assert {(p["port"], p["protocol"]) for p in service["spec"]["ports"]} == {(5060, "UDP"), (5060, "TCP")}
    config = _find(docs, "ConfigMap", "talkover-config")["data"]
    (tmp_path / "frontdoor.toml").write_text(config["frontdoor.toml"])
    cfg = load_config(tmp_path / "frontdoor.toml")
    assert cfg.kamailio.workers and cfg.sip.public_address, "the front door needs workers and its public address"
    assert kamailio_cli.main(["check", "--config", str(tmp_path / "frontdoor.toml")]) == 0


# ---------------------------------------------------------------- PBX snippets

Section = tuple[str, list[str], dict[str, list[str]]]  # name, templates it inherits, key → values
SECTION = re.compile(r"^\[([\w.+-]+)\](?:\(([\w!,.+-]+)\))?$")
SETTING = re.compile(r"^([\w.()-]+)\s*=>?\s*(.*)$")


def read_asterisk_conf(path: Path) -> list[Section]:
    """Asterisk's config format: [section], [name](!) templates, [name](template,...)
    inheritance, `key = value` / `key => value`, `;` comments. Raises on anything else."""
    sections: list[Section] = []
    for no, raw in enumerate(path.read_text().splitlines(), 1):
        line = raw.split(";", 1)[0].strip()
        if not line:
            continue
        if m := SECTION.match(line):
            parents = [p for p in (m.group(2) or "").split(",") if p]
            sections.append((m.group(1), parents, {}))
            continue
        m = SETTING.match(line)
        if not m or not sections:
            raise AssertionError(f"{path.name}:{no}: not a section or a setting: {raw!r}")
        sections[-1][2].setdefault(m.group(1).lower(), []).append(m.group(2).strip())
    return sections


def resolved(sections: list[Section]) -> dict[tuple[str, str], dict[str, list[str]]]:
    """(name, type) → settings with templates applied; templates must exist and come first."""
    templates: dict[str, dict[str, list[str]]] = {}
    out: dict[tuple[str, str], dict[str, list[str]]] = {}
    for name, parents, settings in sections:
        merged: dict[str, list[str]] = {}
        for parent in parents:
            if parent == "!":
                continue
            assert parent in templates, f"[{name}] inherits from unknown template {parent}"
            merged.update(templates[parent])
        merged.update(settings)
        if "!" in parents:
            templates[name] = merged
            continue
        kind = (merged.get("type") or [""])[0]
        assert (name, kind) not in out, f"[{name}] type={kind} defined twice"
        out[(name, kind)] = merged
    return out


def test_asterisk_pjsip_and_dialplan_are_consistent() -> None:
    pjsip = resolved(read_asterisk_conf(DEPLOY / "pbx" / "asterisk" / "pjsip.conf"))
    kinds = {"transport", "endpoint", "aor", "auth", "identify", "registration"}
    assert {k for _, k in pjsip} <= kinds, f"unknown pjsip types: {({k for _, k in pjsip} - kinds)}"
    names = {kind: {n for n, k in pjsip if k == kind} for kind in kinds}
    assert {"talkover-ip", "talkover-reg"} <= names["endpoint"], "IP-based and REGISTER-based trunks"
    for (name, kind), s in pjsip.items():
        if kind == "endpoint":
            for ref, ref_kind in (("aors", "aor"), ("auth", "auth"), ("transport", "transport")):
                for v in s.get(ref, []):
                    assert v in names[ref_kind], f"endpoint {name}: {ref}={v} is not defined"
        if kind == "identify":
            assert s["endpoint"][0] in names["endpoint"]
    assert "contact" in pjsip[("talkover-ip", "aor")], "the IP trunk needs talkover's address"
    assert "contact" not in pjsip[("talkover-reg", "aor")], "the registered trunk learns it from REGISTER"

    contexts = read_asterisk_conf(DEPLOY / "pbx" / "asterisk" / "extensions.conf")
    defined = {name for name, _, _ in contexts}
    for (name, kind), s in pjsip.items():
        if kind == "endpoint":
            assert s["context"][0] in defined, f"endpoint {name}: context {s['context'][0]} missing"
    steps = [(key, v) for _, _, s in contexts for key in ("exten", "same") for v in s.get(key, [])]
    assert steps
    for key, line in steps:  # exten => pattern,priority,App(args) / same => priority,App(args)
        parts = line.split(",", 2 if key == "exten" else 1)
        assert len(parts) == (3 if key == "exten" else 2), f"{key} => {line}"
        assert re.fullmatch(r"(\d+|n)(\([\w-]+\))?", parts[-2]), f"bad priority in {key} => {line}"
        app = parts[-1]
        assert re.fullmatch(r"\w+\(.*\)", app) and app.count("(") == app.count(")"), f"bad application: {line}"
    dials = [v for _, v in steps if "Dial(PJSIP/${EXTEN}@" in v]
    assert dials, "a DID must be dialled to talkover with the DID as the Request-URI user"


@pytest.mark.parametrize("name", ["talkover-gateway.xml", "talkover-user.xml", "talkover-dialplan.xml"])
def test_freeswitch_snippets_are_well_formed(name: str) -> None:
    root = ET.parse(DEPLOY / "pbx" / "freeswitch" / name).getroot()
    assert root.tag == "include"


def test_freeswitch_trunks_and_dialplan() -> None:
    fs = DEPLOY / "pbx" / "freeswitch"
    gateway = ET.parse(fs / "talkover-gateway.xml").getroot().find("gateway")
    assert gateway is not None
    params = {p.get("name"): p.get("value") for p in gateway.iter("param")}
    assert params["register"] == "false" and params["proxy"], "IP-based: no registration, talkover's address"
    user = ET.parse(fs / "talkover-user.xml").getroot().find("user")
    assert user is not None and user.get("id") == "talkover"
    assert any(p.get("name") == "password" for p in user.iter("param")), "REGISTER-based: a user talkover registers as"
    bridges = [a.get("data", "") for a in ET.parse(fs / "talkover-dialplan.xml").getroot().iter("action")
               if a.get("application") == "bridge"]
    assert any(b.startswith(f"sofia/gateway/{gateway.get('name')}/") for b in bridges)
    assert any("sofia_contact(talkover@" in b for b in bridges)
    for ext in ET.parse(fs / "talkover-dialplan.xml").getroot().iter("condition"):
        re.compile(ext.get("expression", ""))  # the DID patterns are valid regular expressions
