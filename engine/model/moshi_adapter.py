"""Kyutai's Moshi (full-duplex speech LM) and Mimi (its 24 kHz codec) as a batched engine model.

Optional: it needs the `moshi` package, installed without its pins (they pull a CUDA torch):
engine/model/README.md. Weights come from a local directory laid out like Kyutai's Hugging Face
repositories (`config.json` naming the files, or Moshi 7B's file names without one); nothing is
ever downloaded. `moshi:tiny` is a random-init miniature for CPU wiring tests.

Every call is one row of Moshi's `streaming(B)` state. The session side is 16 kHz 20 ms frames;
each slot has its own soxr streams (16 → 24 kHz in, 24 → 16 kHz out; ≈ 21 ms of lag each way
at HQ, measured). A tick steps every live, unfrozen slot holding a whole 80 ms frame at 24 kHz:
Mimi encodes, Moshi's LMGen emits a text token and the agent's audio codes, Mimi decodes. The
whole batch is computed with Moshi's per-row exec mask (rows without a frame keep their state);
`reset` zeroes one row through Moshi's reset mask.
"""

from __future__ import annotations

import copy
import json
import time
from collections import deque
from contextlib import AbstractContextManager, ExitStack, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from engine.batch.scheduler import TickStats

MOSHI_RATE = 24_000
SESSION_RATE = 16_000
FRAME_MS = 80
MODEL_FRAME = MOSHI_RATE * FRAME_MS // 1000  # 1920 samples at 24 kHz
SESSION_FRAME = 320  # the session interface's 20 ms at 16 kHz
RESAMPLE_QUALITY = "HQ"
RANDOM_CODEBOOK_STD = 1e-3  # random-init Mimi only (see _make_random_mimi_usable)
RANDOM_DECODER_GAIN = 30.0
MAX_PASSES = 2  # a slot a frame behind (resampler bursts) catches up in a second pass
CONFIG_FILE = "config.json"
MOSHI_7B_NAMES = {"moshi_name": "model.safetensors", "mimi_name": "tokenizer-e351c8d8-checkpoint125.safetensors"}
INSTALL_HINT = "pip install -e '.[moshi]' && pip install --no-deps moshi==0.2.13 (engine/model/README.md)"


class MoshiError(ValueError):
    """The moshi package is missing, or a Moshi weights directory does not fit: the message says which."""


def _moshi() -> Any:
    try:
        from moshi.models import LMGen, loaders
        from moshi.utils.compile import no_compile
    except ImportError as exc:
        raise MoshiError(f"the moshi package is not installed ({exc}): {INSTALL_HINT}") from exc
    return loaders, LMGen, no_compile


@dataclass
class MoshiModels:
    mimi: Any  # moshi.models.compression.MimiModel
    lm: Any  # moshi.models.lm.LMModel
    lm_gen_config: dict[str, Any] = field(default_factory=dict)  # temp, top_k, ... from config.json
    name: str = ""

    @property
    def device(self) -> torch.device:
        return next(self.lm.parameters()).device

    def parameter_counts(self) -> dict[str, int]:
        return {"mimi": sum(p.numel() for p in self.mimi.parameters()),
                "lm": sum(p.numel() for p in self.lm.parameters())}


# -- configs, random init, local weights --------------------------------------------------------------
def tiny_configs() -> tuple[dict[str, Any], dict[str, Any]]:
    """LM kwargs and Mimi config of a miniature Moshi: the real layout (17 streams, delays, a
    depformer, Mimi's 8 codebooks at 12.5 Hz) with small widths, for CPU wiring tests."""
    loaders = _moshi()[0]
    mimi = copy.deepcopy(loaders._mimi_config)
    mimi["seanet"].update(dimension=32, n_filters=4)
    mimi["quantizer"].update(dimension=16, n_q=8, bins=64, input_dimension=32, output_dimension=32)
    mimi["transformer"].update(d_model=32, num_heads=2, num_layers=1, dim_feedforward=64, context=16,
                               input_dimension=32, output_dimensions=[32])
    lm = dict(loaders._lm_kwargs)
    lm.update(dim=32, text_card=100, card=64, num_heads=2, num_layers=1, hidden_scale=2, context=64,
              depformer_dim=32, depformer_dim_feedforward=64, depformer_num_heads=2, depformer_num_layers=1)
    return lm, mimi


def random_models(lm_kwargs: dict[str, Any], mimi_config: dict[str, Any], seed: int = 0,
                  device: str = "cpu", name: str = "random") -> MoshiModels:
    loaders = _moshi()[0]
    torch.manual_seed(seed)
    mimi = loaders.get_mimi(None, mimi_config=copy.deepcopy(mimi_config), device=device,
                            num_codebooks=_mimi_codebooks(lm_kwargs))
    _make_random_mimi_usable(mimi)
    lm = loaders.get_moshi_lm(None, lm_kwargs=dict(lm_kwargs), device=device, dtype=_lm_dtype(device))
    return MoshiModels(mimi, lm, {}, name)


@torch.no_grad()
def _make_random_mimi_usable(mimi: Any) -> None:
    """Untrained, Mimi's codebooks are zeros (every frame gets code 0) and its biases dominate the
    latents. Zero biases and small random codebooks make the codes follow the audio (nearest code ≈
    largest dot product); the output projections and last decoder conv are scaled back up so the
    decoded audio follows the codes at a normal level."""
    convs = [m for m in mimi.modules() if isinstance(m, (torch.nn.Conv1d, torch.nn.ConvTranspose1d, torch.nn.Linear))]
    for m in convs:
        if m.bias is not None:
            m.bias.zero_()
    for m in mimi.modules():
        if hasattr(m, "embedding_sum") and hasattr(m, "_initialized"):
            m.embedding_sum.normal_(0, RANDOM_CODEBOOK_STD)
            m._initialized.fill_(1)
    for rvq in (mimi.quantizer.rvq_first, mimi.quantizer.rvq_rest):
        rvq.output_proj.weight.mul_(1 / RANDOM_CODEBOOK_STD)
    last = [m for m in mimi.decoder.modules() if isinstance(m, torch.nn.Conv1d)][-1]
    last.weight.mul_(RANDOM_DECODER_GAIN)


def save_models(models: MoshiModels, lm_kwargs: dict[str, Any], mimi_config: dict[str, Any],
                directory: str | Path) -> Path:
    """Write the layout `load_models` reads (Kyutai's config.json keys), e.g. a random-init checkpoint."""
    from safetensors.torch import save_file

    path = Path(directory)
    path.mkdir(parents=True, exist_ok=True)
    config = {**lm_kwargs, "moshi_name": "model.safetensors", "mimi_name": "mimi.safetensors",
              "mimi_config_name": "mimi_config.json", "lm_gen_config": models.lm_gen_config}
    (path / CONFIG_FILE).write_text(json.dumps(config, indent=1))
    (path / "mimi_config.json").write_text(json.dumps(mimi_config, indent=1))
    for module, name in ((models.lm, "model.safetensors"), (models.mimi, "mimi.safetensors")):
        save_file({k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}, str(path / name))
    return path


def load_models(directory: str | Path, device: str = "cpu") -> MoshiModels:
    """Moshi + Mimi from a local directory; MoshiError names a missing or unreadable file."""
    loaders = _moshi()[0]
    path = Path(directory)
    if not path.is_dir():
        raise MoshiError(f"{path}: no such Moshi weights directory")
    lm_kwargs: dict[str, Any] | None = None  # None: Moshi 7B's
    if (path / CONFIG_FILE).is_file():
        lm_kwargs = _read_json(path / CONFIG_FILE)
    names, gen_cfg = dict(MOSHI_7B_NAMES), dict[str, Any]()
    for key in ("moshi_name", "mimi_name", "mimi_config_name", "tokenizer_name", "lora_name", "model_type",
                "lm_gen_config", "tts_config", "stt_config", "model_id"):  # Kyutai's keys that are not LM kwargs
        value = lm_kwargs.pop(key, None) if lm_kwargs is not None else None
        if key == "lm_gen_config" and isinstance(value, dict):
            gen_cfg = value
        elif isinstance(value, str):
            names[key] = value
    mimi_config = _read_json(_need(path, names["mimi_config_name"])) if "mimi_config_name" in names else None
    moshi_file, mimi_file = _need(path, names["moshi_name"]), _need(path, names["mimi_name"])
    n_q = _mimi_codebooks(lm_kwargs) if lm_kwargs is not None else 8
    try:
        mimi = loaders.get_mimi(mimi_file, mimi_config=mimi_config, device=device, num_codebooks=n_q)
    except Exception as exc:  # shape/key mismatches surface as RuntimeError from load_state_dict
        raise MoshiError(f"{mimi_file}: does not fit the Mimi config: {_first_line(exc)}") from exc
    try:
        lm = loaders.get_moshi_lm(moshi_file, lm_kwargs=lm_kwargs, device=device, dtype=_lm_dtype(device))
    except Exception as exc:
        raise MoshiError(f"{moshi_file}: does not fit the Moshi config: {_first_line(exc)}") from exc
    return MoshiModels(mimi, lm, dict(gen_cfg), str(path))


def load_spec(spec: str, device: str = "cpu") -> MoshiModels:
    """`moshi:tiny` (random init) or `moshi:<weights directory>`."""
    target = spec.removeprefix("moshi:")
    if target == "tiny":
        lm, mimi = tiny_configs()
        return random_models(lm, mimi, device=device, name="moshi:tiny")
    return load_models(target, device)


def _need(path: Path, name: str) -> Path:
    f = path / name
    if not f.is_file():
        raise MoshiError(f"{f}: missing (named by {CONFIG_FILE} or Moshi's defaults)")
    return f


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise MoshiError(f"{path}: not readable JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise MoshiError(f"{path}: expected a JSON object")
    return data


def _mimi_codebooks(lm_kwargs: dict[str, Any]) -> int:
    """Mimi codebooks Moshi reads per stream (LMModel's defaults: n_q = dep_q = 8)."""
    n_q, dep_q = int(lm_kwargs.get("n_q", 8)), int(lm_kwargs.get("dep_q", 8))
    return max(dep_q, n_q - dep_q)


def _lm_dtype(device: str) -> torch.dtype:
    return torch.bfloat16 if str(device).startswith("cuda") else torch.float32


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]


# -- the batch ------------------------------------------------------------------------------------
@dataclass(slots=True)
class MoshiOutput:
    """One step of one slot."""

    frames: list[bytes]  # 20 ms int16 frames at 16 kHz that became complete (silence until Moshi speaks)
    caller_codes: list[int]  # Mimi's codes of the caller's frame
    agent_codes: list[int] | None  # Moshi's audio codes; None while its delayed streams are not generated yet
    text_token: int  # Moshi's inner-monologue text token (< 0: not generated yet)
    words: bool  # the text token is a word piece, not padding: Moshi is saying something
    step: int


@dataclass
class _Slot:
    up: Any
    down: Any
    live: bool = False
    frozen: bool = False
    inbox: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))  # 24 kHz caller audio
    outbox: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))  # 16 kHz agent audio
    outputs: deque[MoshiOutput] = field(default_factory=deque)
    steps: int = 0


class MoshiBatch:
    """Fixed slots of one Moshi + Mimi; the same slot calls as engine/batch/scheduler.py."""

    frame_ms = float(FRAME_MS)

    def __init__(self, models: MoshiModels, slots: int, greedy: bool = False) -> None:
        _, lm_gen_cls, self._no_compile = _moshi()
        import soxr

        self._soxr = soxr
        self.models, self.n = models, slots
        self.mimi, self.lm = models.mimi, models.lm
        gen_kwargs = {k: v for k, v in models.lm_gen_config.items()
                      if k in ("temp", "temp_text", "top_k", "top_k_text")}
        self.gen = lm_gen_cls(self.lm, use_sampling=not greedy, support_out_of_sync=True, **gen_kwargs)
        self.device = models.device
        self.text_pads = {int(self.lm.text_padding_token_id), int(self.lm.end_of_text_padding_id)}
        self._streams = ExitStack()  # Moshi's streaming(B) state, held until close()
        with self._compile_guard():
            self._streams.enter_context(self.mimi.streaming(slots))
            self._streams.enter_context(self.gen.streaming(slots))
        self.slots = [self._fresh() for _ in range(slots)]
        self.last_tick: TickStats | None = None

    def _fresh(self, live: bool = False, frozen: bool = False) -> _Slot:
        stream = self._soxr.ResampleStream
        return _Slot(stream(SESSION_RATE, MOSHI_RATE, 1, dtype="float32", quality=RESAMPLE_QUALITY),
                     stream(MOSHI_RATE, SESSION_RATE, 1, dtype="float32", quality=RESAMPLE_QUALITY), live, frozen)

    def _compile_guard(self) -> AbstractContextManager[Any]:
        """moshi torch.compile()s a few functions on first use: seconds of compiling on CPU, so off there."""
        return self._no_compile() if self.device.type == "cpu" else nullcontext()

    def _mask(self, rows: list[int]) -> Tensor:
        mask = torch.zeros(self.n, dtype=torch.bool)
        mask[rows] = True
        return mask.to(self.device)

    # -- slot lifecycle -----------------------------------------------------------------------------
    def join(self, slot: int) -> None:
        self.reset(slot)
        self.slots[slot].live = True

    def leave(self, slot: int) -> None:
        self.reset(slot)
        self.slots[slot].live = False

    def reset(self, slot: int) -> None:
        """A fresh conversation in this row; the other rows keep their state."""
        mask = self._mask([slot])
        self.mimi.reset_streaming(mask)
        self.gen.reset_streaming(mask)
        s = self.slots[slot]
        self.slots[slot] = self._fresh(s.live, s.frozen)

    def freeze(self, slot: int, frozen: bool = True) -> None:
        """Hold: no listening, no generation; the row's state waits unchanged."""
        self.slots[slot].frozen = frozen

    # -- inputs and outputs -------------------------------------------------------------------------
    def push(self, slot: int, pcm: bytes) -> None:
        if len(pcm) % 2:
            raise ValueError(f"caller audio must be int16 samples, not {len(pcm)} bytes")
        s = self.slots[slot]
        if not s.live or s.frozen or not pcm:
            return
        x = np.frombuffer(pcm, np.int16).astype(np.float32) / 32768.0
        s.inbox = np.concatenate([s.inbox, s.up.resample_chunk(x)])

    def take(self, slot: int) -> list[MoshiOutput]:
        out = list(self.slots[slot].outputs)
        self.slots[slot].outputs.clear()
        return out

    def ready(self) -> list[int]:
        return [i for i, s in enumerate(self.slots) if s.live and not s.frozen and s.inbox.size >= MODEL_FRAME]

    def tick(self) -> int:
        """Step every ready slot (up to MAX_PASSES frames each); returns the number of slot-steps."""
        t0, done = time.perf_counter(), 0
        for _ in range(MAX_PASSES):
            rows = self.ready()
            if not rows:
                break
            self._step(rows)
            done += len(rows)
        self.last_tick = TickStats(done, time.perf_counter() - t0)
        return done

    @torch.no_grad()
    def _step(self, rows: list[int]) -> None:
        pcm = np.zeros((self.n, 1, MODEL_FRAME), np.float32)
        for r in rows:
            s = self.slots[r]
            pcm[r, 0], s.inbox = s.inbox[:MODEL_FRAME], s.inbox[MODEL_FRAME:]
        mask = self._mask(rows)
        with self._compile_guard():
            self.mimi.set_exec_mask(mask)
            caller = self.mimi.encode(torch.from_numpy(pcm).to(self.device))  # [B, n_q, 1]
            self.gen.set_exec_mask(mask)
            tokens = self.gen.step(caller)  # [B, 1 + dep_q, 1]; < 0 where not generated (yet)
            audio = tokens[:, 1:]
            spoken = mask & (audio >= 0).all(dim=2).all(dim=1)
            self.mimi.set_exec_mask(spoken)  # a row without codes keeps its decoder state
            agent_pcm = self.mimi.decode(audio.clamp(min=0))[:, 0].float()
        agent_pcm = torch.where(spoken.unsqueeze(1), agent_pcm, 0.0).cpu().numpy()
        caller_np, tokens_np = caller[:, :, 0].cpu().numpy(), tokens[:, :, 0].cpu().numpy()
        spoken_np = spoken.cpu().numpy()
        for r in rows:
            self._scatter(r, agent_pcm[r], caller_np[r], tokens_np[r], bool(spoken_np[r]))

    def _scatter(self, r: int, pcm24: np.ndarray, caller: np.ndarray, tokens: np.ndarray, spoken: bool) -> None:
        s = self.slots[r]
        s.steps += 1
        s.outbox = np.concatenate([s.outbox, s.down.resample_chunk(pcm24)])
        whole = s.outbox.size - s.outbox.size % SESSION_FRAME
        pcm16 = (np.clip(s.outbox[:whole], -1.0, 1.0) * 32767).astype(np.int16)
        s.outbox = s.outbox[whole:]
        frames = [pcm16[i : i + SESSION_FRAME].tobytes() for i in range(0, whole, SESSION_FRAME)]
        text = int(tokens[0])
        s.outputs.append(MoshiOutput(frames, caller.tolist(), tokens[1:].tolist() if spoken else None, text,
                                     text >= 0 and text not in self.text_pads, s.steps))

    def close(self) -> None:
        """Leave streaming mode: the models can serve another MoshiBatch."""
        self._streams.close()

    def memory_bytes(self) -> int:
        """Device memory of the streaming state (all slots)."""
        total = 0
        for module in (self.mimi, self.gen, self.lm):
            for state in module.get_streaming_state().values():
                if state is not None:
                    total += _tensor_bytes(vars(state).values())
        return total


def _tensor_bytes(values: Any) -> int:
    total = 0
    for v in values:
        if isinstance(v, Tensor):
            total += v.numel() * v.element_size()
        elif hasattr(v, "cache") and isinstance(v.cache, Tensor):  # moshi's RingKVCache
            total += v.cache.numel() * v.cache.element_size()
    return total
