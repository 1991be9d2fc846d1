"""The streaming model: streaming equals offline, the KV ring's window, conditioning, configs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from engine.model.config import ModelConfig, ModelConfigError, preset
from engine.model.lm import LMInputs
from engine.model.model import DTMF_EVENTS, EVENT_NONE, TEXT_PAD, SpeechModel, StepInputs, text_tokens
from tests.conftest import DATA
from tests.support.audio import read_wav


@pytest.fixture(scope="module")
def model() -> SpeechModel:
    torch.set_num_threads(1)
    return SpeechModel(preset("tiny"))


def speech(seconds: float, offset: int = 0) -> torch.Tensor:
    pcm, _ = read_wav(DATA / "hours_joe_16k.wav")
    n = int(seconds * 16000) // 1280 * 1280
    x = np.resize(pcm.astype(np.float32) / 32768, offset + n)[offset:]
    return torch.from_numpy(x.copy())


def run_steps(model: SpeechModel, frames: int, *, pcm: torch.Tensor | None = None, speaking: bool = True,
              text: list[int] | None = None, events: dict[int, int] | None = None,
              prosody: tuple[float, ...] | None = None, speaker: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """One slot stepped frame by frame; returns everything the offline check needs."""
    st = model.init_state(1)
    if prosody is not None:
        st.prosody[0] = torch.tensor(prosody)
    if speaker is not None:
        st.speaker[0] = speaker
    f = model.cfg.frame_samples
    pcm = speech(frames * f / 16000) if pcm is None else pcm
    rec: dict[str, list[torch.Tensor]] = {k: [] for k in ("caller", "agent_in", "agent", "logits", "pcm", "text", "ev")}
    for i in range(frames):
        tok = text[i] if text and i < len(text) else TEXT_PAD
        ev = (events or {}).get(i, EVENT_NONE)
        rec["agent_in"].append(st.prev_agent[0].clone())
        inp = StepInputs(pcm[i * f : (i + 1) * f].view(1, -1), torch.tensor([tok]), torch.tensor([ev]),
                         torch.tensor([speaking]), torch.tensor([True]))
        st, out = model.step(st, inp)
        rec["caller"].append(out.caller_codes[0])
        rec["agent"].append(out.agent_codes[0])
        rec["logits"].append(out.logits[0])
        rec["pcm"].append(out.pcm[0])
        rec["text"].append(torch.tensor(tok))
        rec["ev"].append(torch.tensor(ev))
    result = {k: torch.stack(v) for k, v in rec.items()}
    result["speaker"], result["prosody"] = st.speaker, st.prosody
    return result


def test_encoder_streaming_equals_offline(model: SpeechModel) -> None:
    pcm = speech(3.2).view(1, -1)
    codes, latents, _ = model.encode(pcm)
    f, states, parts, lat = model.cfg.frame_samples, None, [], []
    for chunk in (1, 3, 2, 4, 1, 4, 5, 20):  # frames per call, irregular on purpose
        c, la, states = model.encode(pcm[:, len(parts) * f : (len(parts) + chunk) * f], states)
        parts += list(c.unbind(1))
        lat.append(la)
    assert len(parts) == codes.shape[1] == 40
    assert torch.allclose(torch.cat(lat, -1), latents, atol=1e-5)
    assert torch.equal(torch.stack(parts, 1), codes)
    assert len(set(codes[0, :, 0].tolist())) > 5, "codes should vary with the speech"


def test_vocoder_streaming_equals_offline(model: SpeechModel) -> None:
    codes = torch.randint(0, model.cfg.encoder.codebook_size, (2, 12, model.cfg.encoder.n_codebooks))
    whole, _ = model.vocode(codes)
    states, out = None, []
    for i in range(12):
        pcm, states = model.vocode(codes[:, i : i + 1], states)
        out.append(pcm)
    streamed = torch.cat(out, 1)
    assert streamed.shape == (2, 12 * model.cfg.frame_samples)
    assert torch.allclose(streamed, whole, atol=1e-5)
    assert streamed.std() > 0.01


def test_lm_streaming_equals_offline_across_the_ring_wrap(model: SpeechModel) -> None:
    frames = model.cfg.lm.context + 16  # past the ring's end: slots are reused
    r = run_steps(model, frames, text=text_tokens("hello there"), events={5: DTMF_EVENTS["3"]})
    inp = LMInputs(r["caller"].unsqueeze(0), r["agent_in"].unsqueeze(0), r["text"].unsqueeze(0),
                   r["ev"].unsqueeze(0), r["speaker"], r["prosody"])
    with torch.no_grad():
        logits, _ = model.lm.offline(inp)
    assert torch.allclose(logits[0], r["logits"], atol=2e-4), (logits[0] - r["logits"]).abs().max()
    assert torch.equal(logits[0].argmax(-1), r["agent"])


def test_the_ring_forgets_exactly_what_left_the_context(model: SpeechModel) -> None:
    ctx, layers = model.cfg.lm.context, model.cfg.lm.layers
    reach = layers * (ctx - 1) + 1  # each layer looks ctx - 1 frames further back
    base = run_steps(model, reach + 3, speaking=False)
    poked = run_steps(model, reach + 3, speaking=False, events={0: DTMF_EVENTS["5"]})
    diff = (base["logits"] - poked["logits"]).abs().amax(dim=(1, 2))
    assert (diff[:reach] > 0).all(), "an event must influence every frame within the layers' reach"
    assert (diff[reach:] == 0).all(), "a frame that left every layer's ring must have no influence"


def _audio_change(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).pow(2).mean().sqrt() / a.pow(2).mean().sqrt())


@pytest.mark.parametrize("what", ["text", "speaker", "rate", "pitch", "emphasis", "pause"])
def test_every_conditioning_input_changes_the_output(model: SpeechModel, what: str,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    # an untrained LM's softmax is flat, so the expected embeddings hardly depend on its codes:
    # the argmax codes show whether each input reaches the audio
    monkeypatch.setattr(model.cfg.lm, "vocode_expected", False)
    frames = 10
    ref_speaker = model.speaker_from_prompt(speech(1.0))[0]
    ref = run_steps(model, frames, speaker=ref_speaker)
    again = run_steps(model, frames, speaker=ref_speaker)
    assert torch.equal(ref["pcm"], again["pcm"]), "the model must be deterministic for this check to mean anything"
    prosody = {"rate": (1.5, 1, 0, 0), "pitch": (1, 1.5, 0, 0), "emphasis": (1, 1, 0.5, 0), "pause": (1, 1, 0, 0.5)}
    if what == "text":
        other = run_steps(model, frames, speaker=ref_speaker, text=text_tokens("good morning"))
    elif what == "speaker":
        other = run_steps(model, frames, speaker=model.speaker_from_prompt(speech(1.0, offset=40000))[0])
    else:
        other = run_steps(model, frames, speaker=ref_speaker, prosody=prosody[what])
    changed_codes = float((ref["agent"] != other["agent"]).float().mean())
    assert changed_codes > 0.2, f"{what}: only {changed_codes:.0%} of the agent's codes changed"
    assert _audio_change(ref["pcm"], other["pcm"]) > 0.3, f"{what}: the audio hardly changed"


def test_the_expected_embedding_of_certain_codes_is_their_embedding(model: SpeechModel) -> None:
    codes = torch.randint(0, model.cfg.encoder.codebook_size, (2, 3, model.cfg.encoder.n_codebooks))
    one_hot = torch.nn.functional.one_hot(codes, model.cfg.encoder.codebook_size).float()
    with torch.no_grad():
        assert torch.allclose(model.vocoder.expected_embedding(one_hot), model.vocoder.embed(codes), atol=1e-6)
        uniform = torch.full_like(one_hot, 1.0 / model.cfg.encoder.codebook_size)
        mean = sum(e.weight.mean(0) for e in model.vocoder.emb)
        assert torch.allclose(model.vocoder.expected_embedding(uniform)[0, 0], mean, atol=1e-5)


def test_presets_state_their_size_rate_and_bitrate() -> None:
    with torch.device("meta"):
        base = SpeechModel(preset("base"))
    total = sum(base.parameter_counts().values())
    assert total >= 100e6, total
    cfg = preset("base")
    assert (cfg.frame_ms, cfg.frame_rate, cfg.bitrate) == (80.0, 12.5, 1000.0)
    assert preset("tiny").bitrate == 400.0


def test_config_errors_name_the_field(tmp_path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ModelConfigError, match="unknown model config 'huge'"):
        preset("huge")
    with pytest.raises(ModelConfigError, match="unknown field lm.depth"):
        ModelConfig.from_dict({"lm": {"depth": 3}})
    with pytest.raises(ModelConfigError, match="multiple of 320"):
        ModelConfig.from_dict({"encoder": {"strides": [3, 5, 8, 7]}})
    bad = tmp_path / "config.json"
    bad.write_text("{not json")
    with pytest.raises(ModelConfigError, match="cannot read model config"):
        ModelConfig.from_json_file(bad)
