"""The rendered Kamailio config: `kamailio -c` accepts it for pools of 1, 2 and 8 workers,
and bad input is refused with a clear message instead of a Kamailio that half works."""

from __future__ import annotations

import shutil
import socket
from pathlib import Path

import pytest

from gateway.config import KamailioConfig
from gateway.supervisor import kamailio_cli
from gateway.supervisor.kamailio import TEMPLATE, FrontDoor, Kamailio, WorkerAddress, render_config, render_dispatcher_list
from gateway.supervisor.kamailio_rpc import KamailioError, parse_dispatcher_list
from tests.support.gateway import free_port

needs_kamailio = pytest.mark.skipif(
    shutil.which("kamailio", path="/usr/sbin:/usr/bin") is None, reason="kamailio not installed"
)


def door(n: int, **kw: object) -> FrontDoor:
    settings = kw.pop("settings", KamailioConfig())
    workers = [WorkerAddress("127.0.0.1", 5071 + i, f"w{i}") for i in range(n)]
    return FrontDoor(listen_host="127.0.0.1", listen_port=5060, workers=workers, settings=settings, **kw)  # type: ignore[arg-type]


@needs_kamailio
@pytest.mark.parametrize("dispatch", ["call-load", "round-robin"])
@pytest.mark.parametrize("workers", [1, 2, 8])
def test_kamailio_accepts_the_rendered_config(tmp_path: Path, workers: int, dispatch: str) -> None:
    kam = Kamailio(door(workers, settings=KamailioConfig(dispatch=dispatch)), tmp_path)
    kam.check()  # raises with Kamailio's own parse errors
    listed = [ln for ln in kam.list_path.read_text().splitlines() if not ln.startswith("#")]
    assert len(listed) == workers
    text = kam.cfg_path.read_text()
    assert "{{" not in text
    assert f'ds_select_dst("1", "{10 if dispatch == "call-load" else 4}", "{workers}")' in text


@needs_kamailio
def test_public_address_tcp_only_and_ipv6_worker_render_and_check(tmp_path: Path) -> None:
    d = FrontDoor(
        listen_host="0.0.0.0", listen_port=5080, transports=["tcp"], advertise="203.0.113.10",
        workers=[WorkerAddress("10.0.0.2", 5060), WorkerAddress("::1", 5062, priority=5)],
        settings=KamailioConfig(allow_list=["192.0.2.0/24"], ping_interval_s=5, no_answer_s=0.5),
    )
    kam = Kamailio(d, tmp_path)
    kam.check()
    text = kam.cfg_path.read_text()
    assert "listen=tcp:0.0.0.0:5080 advertise 203.0.113.10:5080" in text
    assert "listen=udp" not in text
    assert 'is_in_subnet("$si", "192.0.2.0/24,10.0.0.2/32,::1/128")' in text
    assert 'modparam("tm", "fr_timer", 500)' in text
    assert 'modparam("dispatcher", "ds_ping_interval", 5)' in text
    assert "1 sip:[::1]:5062 8 5 duid=w1;maxload=4" in kam.list_path.read_text()


def test_dispatcher_list_has_one_probed_line_per_worker_with_its_call_cap() -> None:
    text = render_dispatcher_list(door(2, calls_per_worker=4))
    assert text.splitlines()[1:] == ["1 sip:127.0.0.1:5071 8 0 duid=w0;maxload=4",
                                     "1 sip:127.0.0.1:5072 8 0 duid=w1;maxload=4"]


@pytest.mark.parametrize(
    ("front", "message"),
    [
        (door(0), "at least one worker"),
        (FrontDoor("127.0.0.1", 5060, [WorkerAddress("127.0.0.1", 5071)] * 2), "duplicate worker"),
        (FrontDoor("127.0.0.1", 5060, [WorkerAddress("127.0.0.1", 5060)]), "front door's own address"),
        (door(1, settings=KamailioConfig(allow_list=["10.0.0.300/8"])), "allow_list"),
        (door(1, settings=KamailioConfig(dispatch="fastest")), "dispatch"),
        (door(1, settings=KamailioConfig(ping_interval_s=0)), "ping_interval_s"),
        (door(1, transports=["sctp"]), "transports"),
        (door(1, log_level="verbose"), "log level"),
    ],
)
def test_bad_front_doors_are_refused_with_the_reason(front: FrontDoor, message: str) -> None:
    with pytest.raises(KamailioError, match=message):
        render_config(front, "/tmp/ctl.sock", "/tmp/dispatcher.list")


@pytest.mark.parametrize("text", ["5060", "host:", "host:99999", "sip:a:b"])
def test_bad_worker_addresses(text: str) -> None:
    with pytest.raises(KamailioError, match="not host:port"):
        WorkerAddress.parse(text)


def test_worker_address_forms() -> None:
    assert WorkerAddress.parse("sip:10.0.0.2:5060").uri == "sip:10.0.0.2:5060"
    assert WorkerAddress.parse("[2001:db8::1]:5070").uri == "sip:[2001:db8::1]:5070"


def test_unknown_placeholder_in_a_template(tmp_path: Path) -> None:
    bad = tmp_path / "t.cfg"
    bad.write_text(TEMPLATE.read_text() + "\n# {{not_a_setting}}\n")
    with pytest.raises(KamailioError, match="not_a_setting"):
        render_config(door(1), "/tmp/ctl.sock", "/tmp/list", template=bad)


@needs_kamailio
def test_kamailio_parse_errors_come_back_in_the_error(tmp_path: Path) -> None:
    broken = tmp_path / "broken.tmpl"
    broken.write_text(TEMPLATE.read_text().replace("route(DISPATCH);\n}", "route(DISPATCH);\n", 1))
    with pytest.raises(KamailioError, match="parse error"):
        Kamailio(door(1), tmp_path / "run", template=broken).check()


@needs_kamailio
def test_start_refuses_a_busy_port_and_a_missing_binary(tmp_path: Path) -> None:
    port = free_port()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind(("127.0.0.1", port))
        d = FrontDoor("127.0.0.1", port, [WorkerAddress("127.0.0.1", 5071)], transports=["udp"])
        kam = Kamailio(d, tmp_path / "a")
        with pytest.raises(KamailioError, match="cannot listen on udp:127.0.0.1"):
            kam.start()
        assert not kam.alive
    missing = Kamailio(door(1, settings=KamailioConfig(binary="kamailio-not-installed")), tmp_path / "b")
    with pytest.raises(KamailioError, match="install the Debian package 'kamailio'"):
        missing.start()


def test_dispatcher_list_parser_reads_kamcmd_output() -> None:
    out = """{
\tNRSETS: 1
\tRECORDS: {
\t\tSET: {
\t\t\tID: 1
\t\t\tTARGETS: {
\t\t\t\tDEST: {
\t\t\t\t\tURI: sip:127.0.0.1:5072
\t\t\t\t\tFLAGS: IP
\t\t\t\t\tPRIORITY: 0
\t\t\t\t\tATTRS: {
\t\t\t\t\t\tBODY: duid=w1;maxload=4
\t\t\t\t\t\tSOCKET: <null string>
\t\t\t\t\t}
\t\t\t\t\tRUNTIME: {
\t\t\t\t\t\tDLGLOAD: 3
\t\t\t\t\t}
\t\t\t\t}
\t\t\t\tDEST: {
\t\t\t\t\tURI: sip:127.0.0.1:5071
\t\t\t\t\tFLAGS: DX
\t\t\t\t\tPRIORITY: 2
\t\t\t\t}
\t\t\t}
\t\t}
\t}
}"""
    first, second = parse_dispatcher_list(out)
    assert (first.uri, first.state, first.probing, first.load, first.attrs) == (
        "sip:127.0.0.1:5072", "inactive", True, 3, "duid=w1;maxload=4")
    assert (second.state, second.probing, second.takes_calls, second.priority) == ("disabled", False, False, 2)


@needs_kamailio
def test_cli_check_and_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "talkover.toml"
    cfg.write_text('[sip]\nport = 5090\n[kamailio]\nworkers = ["10.0.0.2:5060", "10.0.0.3:5060"]\n')
    assert kamailio_cli.main(["check", "--config", str(cfg)]) == 0
    assert kamailio_cli.main(["render", "--config", str(cfg), "--out", str(tmp_path / "out")]) == 0
    assert "sip:10.0.0.3:5060" in (tmp_path / "out" / "dispatcher.list").read_text()
    assert kamailio_cli.main(["check", "--config", str(cfg), "--worker", "nonsense"]) == 2
    assert "not host:port" in capsys.readouterr().err
    cfg.write_text('[kamailio]\nallow_list = ["nope"]\n')
    assert kamailio_cli.main(["check", "--config", str(cfg), "--worker", "10.0.0.2:5060"]) == 2
