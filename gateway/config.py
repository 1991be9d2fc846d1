"""talkover's configuration: one typed, documented place.

`talkover serve --config FILE` reads a TOML file whose tables mirror the dataclasses below;
every key is optional and defaults to what is written here. Unknown keys and wrong types
fail at start with the file and line (see gateway/tomlfile.py). The dialplan (which number
reaches which agent) is a separate file, see gateway/dialplan.py.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from gateway.tomlfile import TomlSource, build

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DIALPLAN = REPO_ROOT / "dialplans" / "default.toml"
CODECS = ("G722/16000", "PCMU/8000", "PCMA/8000")


@dataclass
class JitterConfig:
    """pjmedia's adaptive jitter buffer bounds (ms; -1 = pjmedia default: init 0, min 1
    frame, max prefetch 4/5 of max, max 500).

    Defaults chosen with `talkover bench network` (4 real calls x 20 s per network profile
    through the impairment relay, settings side by side): pjmedia's own (init 0) never
    prefetches, so on a 40 ± 30 ms jitter line it discarded 15-28 % of the frames as late. An
    initial prefetch of 40 ms brought that to ~1 %, but on a clean line the adaptive buffer then
    shrinks to its 20 ms floor mid-call: the echo path moves by 20 ms, AEC3 re-converges, and at
    0 dB ERL (SIPp -rtp_echo) the echo started speech in 4 of 4 calls (`talkover bench
    interruption`). init = floor = 20 ms keeps a clean line's delay still: 2.4 % late on the
    jittery line, 0 false barge-ins in 8 echo calls, barge-in p95 141 ms (vs 153 at init 40).
    A 100 ms prefetch ceiling and 300 ms buffer kept the delay lowest of the settings tried;
    static discard was no better than progressive.
    """

    init_ms: int = 20  # initial prefetch (0 = none: the buffer then plays whatever has arrived)
    min_pre_ms: int = 20  # lowest prefetch the adaptive algorithm may go down to
    max_pre_ms: int = 100  # highest prefetch
    max_ms: int = 300  # buffer size; frames beyond it are discarded
    discard_algo: int = 2  # 0 none, 1 static, 2 progressive (pjmedia's default)

    def validate(self) -> tuple[str, str] | None:
        for name in ("init_ms", "min_pre_ms", "max_pre_ms", "max_ms"):
            if getattr(self, name) < -1:
                return name, "must be >= 0, or -1 for the pjmedia default"
        if self.min_pre_ms > 0 and self.max_pre_ms > 0 and self.min_pre_ms > self.max_pre_ms:
            return "min_pre_ms", "must not exceed max_pre_ms"
        if self.discard_algo not in (0, 1, 2):
            return "discard_algo", "must be 0 (none), 1 (static) or 2 (progressive)"
        return None


@dataclass
class RegisterConfig:
    """Optional outbound REGISTER to a trunk/PBX so that its DIDs reach us."""

    enabled: bool = False
    registrar: str = ""  # e.g. "sip:pbx.example.com"
    aor: str = ""  # address of record, e.g. "sip:1000@pbx.example.com"
    username: str = ""
    password: str = ""
    realm: str = "*"
    expires_s: int = 300  # pjsua re-registers before this runs out
    retry_s: int = 30  # after a failure

    def validate(self) -> tuple[str, str] | None:
        if self.enabled:
            for name in ("registrar", "aor"):
                if not getattr(self, name).startswith(("sip:", "sips:")):
                    return name, "must be a sip: URI when registration is enabled"
        if self.expires_s < 10:
            return "expires_s", "must be at least 10"
        return None


@dataclass
class FloodConfig:
    """Per-source-IP INVITE rate limit (gateway/sip/flood.py): a token bucket per address;
    an INVITE past it gets 503 + Retry-After before any engine slot or media is touched.
    Sources in `allow` are never limited: list load generators and trusted proxies
    (Kamailio, the PBX) here explicitly rather than turning the limit off."""

    invites_per_s: float = 10.0  # sustained INVITEs per second per source address; 0 = no limit
    burst: int = 20  # INVITEs a source may send at once before the rate applies
    allow: list[str] = field(default_factory=list)  # CIDRs never limited, e.g. ["127.0.0.1/32", "10.0.0.0/8"]

    def validate(self) -> tuple[str, str] | None:
        if self.invites_per_s < 0:
            return "invites_per_s", "must be >= 0 (0 = no limit)"
        if self.burst < 1:
            return "burst", "must be >= 1"
        for cidr in self.allow:
            try:
                ipaddress.ip_network(cidr, strict=True)
            except ValueError as exc:
                return "allow", f"{cidr!r} is not a CIDR network (e.g. 127.0.0.1/32): {exc}"
        return None


@dataclass
class SipConfig:
    host: str = "127.0.0.1"  # bind address for SIP and RTP
    port: int = 5060  # UDP and TCP
    transports: list[str] = field(default_factory=lambda: ["udp", "tcp"])
    public_address: str = ""  # advertised in Contact/Via/SDP; default: host
    rtp_port: int = 40000  # first RTP port; each call takes 2 (RTP + RTCP)
    rtp_port_range: int = 2000
    max_calls: int = 4  # clamped to pjsua_call_get_max_count() (4 in the PyPI wheel)
    codecs: list[str] = field(default_factory=lambda: list(CODECS))  # preference order
    retry_after_s: int = 5  # Retry-After of our 503s
    max_call_s: float = 3600.0  # hard cap; dialplan entries may set lower
    pjsip_log_level: int = 2  # PJSIP's own log routed into ours (0-6)
    user_agent: str = "talkover"
    jitter: JitterConfig = field(default_factory=JitterConfig)
    register: RegisterConfig = field(default_factory=RegisterConfig)
    flood: FloodConfig = field(default_factory=FloodConfig)

    def validate(self) -> tuple[str, str] | None:
        if not 0 < self.port < 65536:
            return "port", "must be 1-65535"
        bad = [t for t in self.transports if t not in ("udp", "tcp")]
        if bad or not self.transports:
            return "transports", "must list one or both of 'udp', 'tcp'"
        unknown = [c for c in self.codecs if c not in CODECS]
        if unknown or not self.codecs:
            return "codecs", f"must be chosen from {list(CODECS)}"
        if self.max_calls < 1:
            return "max_calls", "must be >= 1"
        if not 1024 <= self.rtp_port <= 65000 or self.rtp_port_range < 8:
            return "rtp_port", "must be 1024-65000 with a range of at least 8"
        if self.max_call_s <= 0:
            return "max_call_s", "must be positive"
        return None


@dataclass
class MediaConfig:
    """The per-call media chain (gateway/media): inbound frame → echo canceller → noise
    suppression → speech detector → engine; agent frames → playout queue → sender, and the
    same frame → the echo canceller's reference. Chosen settings and their measurements:
    `talkover bench aec`."""

    aec: bool = True  # WebRTC AEC3 per call (far-end reference = exactly the frame sent)
    aec_high_pass: bool = True  # the APM's high-pass filter in front of the canceller (hum, DC)
    aec_skip_echo_free: bool = True  # leave AEC3 out while the line brings none of the agent's audio
    #   back (gateway/media/echo_bound.py); False feeds it silence as reference instead (~30 % more chain CPU)
    aec_warmup_erle_db: float = 20.0  # until the AEC has removed this much echo (0.5 s of agent audio), speech-start
    aec_warmup_margin_db: float = 3.0  # needs a frame within this many dB of the loudest frame sent (last 600 ms)
    noise: str = "apm"  # noise suppression: "apm" (in the AEC's own pass), "webrtc" (webrtc-noise-gain), "off"
    auto_gain_dbfs: int = 0  # automatic gain towards this level; 0 = off (gain raises residual echo too)
    vad: str = "silero"  # speech detector: "silero" (energy gate + Silero ONNX) or "energy" (energy only)
    vad_threshold_dbfs: float = -50.0  # energy gate: quieter frames are never speech (dialplan may override)
    vad_start_probability: float = 0.5  # Silero probability that makes a frame voiced
    vad_stop_probability: float = 0.35  # ... and keeps it voiced once in speech (hysteresis)
    vad_start_ms: int = 20  # voiced this long → speech-start (the tick that pauses agent playout)
    vad_stop_ms: int = 500  # unvoiced this long → speech-stop
    vad_batch: bool = True  # SIP workers: one Silero inference per 20 ms tick for all their calls (same
    #   decisions, same tick; gateway/media/vad_batch.py) instead of one per call
    playout_max_ms: int = 2000  # agent audio the playout queue may hold ahead
    stage_timing_sample: int = 10  # every Nth frame's per-stage time goes to the /metrics histogram

    def validate(self) -> tuple[str, str] | None:
        if self.vad_start_ms % 20 or self.vad_stop_ms % 20 or self.vad_start_ms < 20 or self.vad_stop_ms < 20:
            return "vad_start_ms", "VAD times must be positive multiples of the 20 ms frame"
        if self.noise not in ("apm", "webrtc", "off"):
            return "noise", "must be 'apm', 'webrtc' or 'off'"
        if self.vad not in ("silero", "energy"):
            return "vad", "must be 'silero' or 'energy'"
        if not 0 <= self.auto_gain_dbfs <= 31:
            return "auto_gain_dbfs", "must be 0 (off) to 31"
        if not 0 < self.vad_stop_probability <= self.vad_start_probability < 1:
            return "vad_start_probability", "need 0 < vad_stop_probability <= vad_start_probability < 1"
        if self.aec_warmup_erle_db < 0 or self.aec_warmup_margin_db < 0:
            return "aec_warmup_erle_db", "aec_warmup_erle_db and aec_warmup_margin_db must be >= 0"
        if self.stage_timing_sample < 1:
            return "stage_timing_sample", "must be >= 1"
        return None


@dataclass
class EngineConfig:
    socket: str = ""  # Unix socket path; default: <runtime dir>/engine.sock
    slots: int = 16  # concurrent sessions the engine serves (all workers together)
    open_timeout_s: float = 2.0  # no slot granted in time → 503
    record_dir: str = ""  # if set, each call's caller and agent audio is saved here as WAV
    model: str = ""  # speech model for `agent = "model"`: a preset (tiny, base) or a checkpoint dir; "" = none;
    # for `agent = "moshi"`: "moshi:<local Moshi weights dir>" or "moshi:tiny" (random init, tests)
    device: str = "cpu"  # cpu | cuda | cuda:N
    threads: int = 1  # torch threads of the model step (the gateway's clock thread needs a core)

    def validate(self) -> tuple[str, str] | None:
        if self.slots < 1:
            return "slots", "must be >= 1"
        known = ("tiny", "base", "moshi:tiny")
        if self.model and self.model not in known and not Path(self.model.removeprefix("moshi:")).is_dir():
            return "model", "must be a preset (tiny, base), an existing checkpoint directory or moshi:<weights directory>"
        if self.device != "cpu" and not self.device.startswith("cuda"):
            return "device", "must be cpu, cuda or cuda:N"
        if self.threads < 1:
            return "threads", "must be >= 1"
        return None


@dataclass
class HttpConfig:
    host: str = "127.0.0.1"
    port: int = 8080  # /metrics, /healthz, /calls, the softphone page `/` and /webrtc/* signalling


@dataclass
class IceServer:
    """A STUN or TURN server handed to the WebRTC peer connections (aiortc uses the first
    STUN and the first TURN server listed)."""

    urls: list[str] = field(default_factory=list)  # e.g. ["stun:stun.example.com:3478"]
    username: str = ""  # TURN only
    credential: str = ""  # TURN only

    def validate(self) -> tuple[str, str] | None:
        if not self.urls or any(not u.startswith(("stun:", "turn:", "turns:")) for u in self.urls):
            return "urls", "each ICE server needs stun:, turn: or turns: URLs"
        return None


@dataclass
class WebRtcConfig:
    """Browser calls: a WebRTC worker process (aiortc) behind the HTTP listener's `/` page and
    `/webrtc/*` signalling. Full ICE: the answer carries every candidate (no trickle)."""

    enabled: bool = True
    max_calls: int = 16  # live WebRTC calls in the worker; one more offer gets 503
    host_addresses: list[str] = field(default_factory=list)  # ICE host candidates; [] = every non-loopback address
    ice_servers: list[IceServer] = field(default_factory=list)  # [] = no STUN/TURN (host candidates only)
    default_called: str = "webrtc"  # routed through the dialplan when an offer names no entry
    consent_interval_s: float = 5.0  # ICE consent freshness checks (RFC 7675) every this often
    consent_failures: int = 6  # missed checks in a row → the peer is gone: call ended, ports freed
    connect_timeout_s: float = 15.0  # answered but ICE/DTLS not connected by then → call ended
    max_offer_bytes: int = 65536  # larger signalling bodies get 413

    def validate(self) -> tuple[str, str] | None:
        if self.max_calls < 1:
            return "max_calls", "must be >= 1"
        if self.consent_interval_s <= 0 or self.consent_failures < 1:
            return "consent_interval_s", "must be positive (and consent_failures >= 1)"
        if self.connect_timeout_s <= 0:
            return "connect_timeout_s", "must be positive"
        return None


@dataclass
class SupervisorConfig:
    """The processes of `talkover serve`. With `workers` > 1 the SIP workers listen on
    worker_host:worker_port, worker_port+1, ... and Kamailio ([kamailio]) takes [sip]
    host/port as the front door; each worker gets its own share of the RTP port range.
    SIGHUP restarts the workers one by one (drain, restart, back into the dispatcher)."""

    workers: int = 1  # SIP worker processes (pjsua2 caps each at 4 calls)
    worker_host: str = "127.0.0.1"  # where pooled workers listen (a LAN address for other hosts' Kamailio)
    worker_port: int = 5070  # first pooled worker's SIP port
    front_door: bool = True  # run Kamailio in front of a pool here; false where another host's Kamailio dispatches to these workers
    drain_s: float = 10.0  # on SIGTERM/rolling restart: live calls may finish for this long, then BYE
    restart_backoff_s: float = 0.5  # first restart delay of a dead child; doubles to 10 s
    runtime_dir: str = ""  # sockets and metrics files; default: a fresh temp dir

    def validate(self) -> tuple[str, str] | None:
        if not 1 <= self.workers <= 256:
            return "workers", "must be 1-256"
        if not 1024 <= self.worker_port <= 65535 - self.workers:
            return "worker_port", "must leave room for one port per worker below 65536"
        if self.drain_s < 0:
            return "drain_s", "must be >= 0"
        return None


@dataclass
class KamailioConfig:
    """Kamailio, the public SIP front door of a pool of more than one worker (deploy/kamailio/):
    it dispatches INVITEs over the workers, health-checks them with OPTIONS, tries the next
    worker on 486/503/no answer, record-routes in-dialog requests to the worker that took the
    call, and flood-limits sources outside `allow_list`. Signalling only: RTP flows between
    the caller and the worker's own media address. It listens on [sip] host/port."""

    binary: str = "kamailio"  # looked up in PATH, then /usr/sbin
    kamcmd: str = "kamcmd"
    dispatch: str = "call-load"  # "call-load": the worker with the fewest live calls first; "round-robin"
    ping_interval_s: int = 1  # OPTIONS to every worker this often; one that fails is skipped until it answers
    no_answer_s: float = 2.0  # a worker silent this long (not even 100 Trying) is skipped and marked down
    ring_s: float = 60.0  # after a provisional reply the final answer must come within this
    flood_requests: int = 400  # requests one source may send per flood_window_s (Kamailio pike; blocks at 1-3x)
    flood_window_s: int = 2
    allow_list: list[str] = field(default_factory=lambda: ["127.0.0.0/8"])  # CIDRs never flood-limited; workers are added
    workers: list[str] = field(default_factory=list)  # "host:port" of workers on other hosts (front door of its own)
    children: int = 4  # Kamailio SIP processes per transport
    shm_mb: int = 64
    pkg_mb: int = 8
    start_timeout_s: float = 10.0  # Kamailio must answer OPTIONS and RPC within this

    def validate(self) -> tuple[str, str] | None:
        import ipaddress

        if self.dispatch not in ("call-load", "round-robin"):
            return "dispatch", "must be 'call-load' or 'round-robin'"
        if not 1 <= self.ping_interval_s <= 3600:
            return "ping_interval_s", "must be 1-3600 (Kamailio pings in whole seconds)"
        if not 0.1 <= self.no_answer_s <= 60 or not 1 <= self.ring_s <= 600:
            return "no_answer_s", "no_answer_s must be 0.1-60 s and ring_s 1-600 s"
        if self.flood_requests < 1 or self.flood_window_s < 1:
            return "flood_requests", "flood_requests and flood_window_s must be >= 1"
        for cidr in self.allow_list:
            try:
                ipaddress.ip_network(cidr, strict=False)
            except ValueError:
                return "allow_list", f"{cidr!r} is not an address or CIDR network"
        for worker in self.workers:
            host, _, port = worker.rpartition(":")
            if not host or not port.isdigit() or not 0 < int(port) < 65536:
                return "workers", f"{worker!r} is not host:port"
        if self.children < 1 or self.shm_mb < 16 or self.pkg_mb < 4:
            return "children", "need children >= 1, shm_mb >= 16, pkg_mb >= 4"
        return None


@dataclass
class LogConfig:
    level: str = "info"
    format: str = "auto"  # auto (JSON unless a terminal), json, console

    def validate(self) -> tuple[str, str] | None:
        if self.level not in ("debug", "info", "warning", "error"):
            return "level", "must be debug, info, warning or error"
        if self.format not in ("auto", "json", "console"):
            return "format", "must be auto, json or console"
        return None


@dataclass
class Config:
    dialplan: str = str(DEFAULT_DIALPLAN)  # relative paths are relative to the config file
    sip: SipConfig = field(default_factory=SipConfig)
    media: MediaConfig = field(default_factory=MediaConfig)
    engine: EngineConfig = field(default_factory=EngineConfig)
    http: HttpConfig = field(default_factory=HttpConfig)
    webrtc: WebRtcConfig = field(default_factory=WebRtcConfig)
    supervisor: SupervisorConfig = field(default_factory=SupervisorConfig)
    kamailio: KamailioConfig = field(default_factory=KamailioConfig)
    log: LogConfig = field(default_factory=LogConfig)

    def runtime_dir(self) -> Path:
        if not self.supervisor.runtime_dir:
            self.supervisor.runtime_dir = tempfile.mkdtemp(prefix="talkover-")
        path = Path(self.supervisor.runtime_dir)
        path.mkdir(parents=True, exist_ok=True)
        return path

    def engine_socket(self) -> str:
        return self.engine.socket or str(self.runtime_dir() / "engine.sock")


def load_config(path: str | Path | None) -> Config:
    if path is None:
        return Config()
    src = TomlSource(path)
    cfg = build(Config, src.data, src)
    dp = Path(cfg.dialplan)
    if not dp.is_absolute():
        cfg.dialplan = str((Path(path).resolve().parent / dp).resolve())
    return cfg


def dump_config(cfg: Config, path: Path) -> None:
    """The supervisor hands its children the resolved config (runtime dir included) as JSON."""
    path.write_text(json.dumps(dataclasses.asdict(cfg), indent=1))


def load_resolved(path: str | Path) -> Config:
    return build(Config, json.loads(Path(path).read_text()), TomlSource(path, data={}))
