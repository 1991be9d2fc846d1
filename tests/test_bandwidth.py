"""What the receptionist's recognizer does for telephone callers: the bandwidth extension of a
telephone-band turn and the non-rhotic pronunciations of the domain words."""

from __future__ import annotations

import numpy as np

from engine.agents.receptionist import bandwidth as bw
from engine.agents.receptionist.asr import make_decoder, non_rhotic, transcribe
from engine.agents.receptionist.intents import classify
from engine.data.telephone import LineParams, telephone
from engine.data.voices import BY_NAME, read_wav, say
from engine.train.bwe import EXTRA_VOICES, examples, fit, voice_pairs
from gateway.config import REPO_ROOT

DATA = REPO_ROOT / "tests" / "data"


def _hf_db(x: np.ndarray) -> float:
    """Mean power of the 4-8 kHz bands over the frames where the wide-band speech is voiced, in dB."""
    power = bw._frames(x.astype(np.float64)) @ bw._HF.T
    return float(10 * np.log10(power.mean() + 1e-9))


def test_telephone_band_is_told_from_wide_band() -> None:
    wide = read_wav(DATA / "hours_f3_16k.wav")  # a held-out voice
    assert not bw.is_narrowband(wide)
    assert bw.is_narrowband(telephone(wide, LineParams(snr_db=25.0), np.random.default_rng(0)))


def test_the_missing_band_comes_back_at_about_its_level() -> None:
    wide = read_wav(DATA / "person_f3_16k.wav")
    narrow = telephone(wide, LineParams(snr_db=25.0), np.random.default_rng(1))
    extended = bw.BandwidthExtender.load().extend(narrow)
    assert _hf_db(narrow) < _hf_db(wide) - 25  # what the line took away
    assert abs(_hf_db(extended) - _hf_db(wide)) < 8, (_hf_db(extended), _hf_db(wide))
    added = (extended.astype(np.float64) - narrow) / 32768
    spec = np.abs(np.fft.rfft(added)) ** 2
    freqs = np.fft.rfftfreq(added.size, 1 / 16000)
    assert spec[freqs < 3800].sum() < 0.01 * spec[freqs >= 4000].sum()  # the line's own band is left alone


def test_a_telephone_band_question_is_understood_with_the_band_restored() -> None:
    wide = read_wav(DATA / "person_f3_16k.wav")  # a held-out voice, which the line leaves unintelligible
    narrow = telephone(wide, LineParams(snr_db=25.0), np.random.default_rng(2)).tobytes()

    def heard(pcm: bytes, extend: bool) -> str:
        return transcribe(make_decoder(), pcm, extend_band=extend).text  # a fresh decoder: no noise history

    assert classify(heard(narrow, True)).intent == "person", heard(narrow, True)
    assert classify(heard(narrow, False)).intent != "person", heard(narrow, False)
    assert heard(wide.tobytes(), True) == heard(wide.tobytes(), False)  # a wide-band turn is left as it is


def test_fitting_lowers_the_loss_and_the_weights_load(tmp_path) -> None:  # type: ignore[no-untyped-def]
    x, y = examples(voice_pairs(EXTRA_VOICES[:1], lines_per_voice=6, seed=0))
    extender, losses = fit(x, y, hidden=32, epochs=60)
    assert losses[-1] < 0.7 * losses[0], losses
    extender.save(tmp_path / "bwe.npz")
    again = bw.BandwidthExtender.load(tmp_path / "bwe.npz")
    probe = read_wav(DATA / "hours_f3_16k.wav").astype(np.float64)
    assert np.allclose(again.envelope(probe), extender.envelope(probe), atol=1e-3)


def test_non_rhotic_pronunciations_keep_an_r_only_before_a_vowel() -> None:
    assert non_rhotic("P AA R K".split()) == "P AA K".split()
    assert non_rhotic("HH ER T S".split()) == "HH AH T S".split()
    assert non_rhotic("S AA R IY".split()) == "S AA R IY".split()  # "sorry": the R starts a syllable
    assert non_rhotic("T R AE N S F ER".split()) == "T R AE N S F AH".split()


def test_a_non_rhotic_caller_asking_for_the_car_park_is_understood() -> None:
    """A British train voice (espeak-ng en-gb) through the line: cmudict's rhotic "car park"
    decoded as "talk"; with the domain words' non-rhotic forms it is heard."""
    wide = say(BY_NAME["espeak-gb-f2"], "Do you have a car park?")
    with_variants, without = [], []
    for seed in range(3):
        narrow = telephone(wide, LineParams(snr_db=25.0), np.random.default_rng(seed)).tobytes()
        with_variants.append(classify(transcribe(make_decoder(), narrow).text).intent)
        without.append(classify(transcribe(make_decoder(non_rhotic_variants=False), narrow).text).intent)
    assert with_variants == ["parking"] * 3, with_variants
    assert without.count("parking") <= 1, without
