"""Folders saved by the first release (tests/fixtures/release_0_1, made by its make_fixture.py at commit d92ee97) load
with today's code through the Auto classes and give that release's numbers: processor outputs and logits."""

import importlib.util
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForMultimodalLM, AutoProcessor

import transformers_av  # noqa: F401  (registers the Auto classes)
from transformers_av.models.beats.feature_extraction_beats import BeatsFeatureExtractor

from log_mel_tolerance import beats_energy, beats_fbank_bound, within_db_of_frame_peak

RELEASE = Path(__file__).parent / "fixtures" / "release_0_1"
_spec = importlib.util.spec_from_file_location("release_fixture", RELEASE / "make_fixture.py")
release_fixture = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(release_fixture)

# Same code path, same inputs, but a different process and possibly another CPU (AVX2 / AVX-512 kernels, other
# thread counts): the resize, the log-mel FFT and the matmuls may round differently in the last float32 bits.
# - Pixels: a bicubic resize (no antialias) is two passes of 4-tap sums of [0, 1] values (|weights| sum <= 1.375 per
#   pass): ~16 ulps of 1, then / CLIP std (>= 0.2613): ~7e-6 -> 1e-5 (measured 2.7e-6, ATen default vs AVX2 kernels).
# - Logits: O(100) accumulations of O(1) values: 1e-5 (measured <= 2.4e-7, also with other FFT kernels).
# - Log-mel entries are logs of spectral energies, and low-energy bins amplify FFT round-off
#   (tests/log_mel_tolerance.py). Whisper's log-mel is clamped 80 dB below its maximum, which caps that (measured
#   <= 4.8e-7 here, 1.9e-5 on the official clip); CLAP's is computed in float64 by numpy (no CPU dispatch; measured
#   0): 1e-4. BEATs' fbank has no such floor, and this 440 Hz tone leaves most mel bins 60-120 dB below the frame's
#   peak: 1.6e-4 with ATen's AVX2 kernels, 6e-4 with its default ones, 6e-3 with other FFTs. It gets the per-entry
#   FFT round-off bound instead.
PIXEL_ATOL, FEATURE_ATOL, LOGIT_ATOL = 1e-5, 1e-4, 1e-5


@pytest.mark.parametrize("family", ["favor", "av_llm"])
def test_first_release_folder_loads_and_gives_its_numbers(family):
    folder = RELEASE / family
    expected = load_file(str(folder / "expected.safetensors"))
    processor = AutoProcessor.from_pretrained(folder)
    model = AutoModelForMultimodalLM.from_pretrained(folder).eval()
    assert type(model).__module__.startswith("transformers_av.")  # the installed package's class, not remote code

    frames, tone = release_fixture.media()
    inputs = processor(text=release_fixture.PROMPT, videos=frames, audio=tone, sampling_rate=16000, return_tensors="pt")
    stored = {key.removeprefix("inputs."): value for key, value in expected.items() if key.startswith("inputs.")}
    assert set(stored) == {key for key, value in inputs.items() if torch.is_tensor(value)}
    beats = isinstance(getattr(processor, "audio_feature_extractor", None), BeatsFeatureExtractor)  # FAVOR, not CLAP
    for key, value in stored.items():
        ours = release_fixture.thin(inputs[key])
        assert ours.shape == value.shape and ours.dtype == value.dtype, key
        if key == "audio_input_features" and beats:
            # each frame's loudest mel energy from our full fbank (the fixture keeps every 7th bin only)
            energy = beats_energy(inputs[key])
            loudest = release_fixture.thin(energy.max(dim=-1, keepdim=True).values.expand_as(energy))
            diff = (ours.double() - value.double()).abs()
            assert diff[within_db_of_frame_peak(value, 50, loudest)].max() <= 1e-5, key
            assert (diff <= beats_fbank_bound(value, loudest)).all(), key
        elif value.is_floating_point():
            atol = PIXEL_ATOL if "pixel" in key else FEATURE_ATOL
            torch.testing.assert_close(ours, value, rtol=0, atol=atol, msg=key)
        else:
            assert torch.equal(ours, value), key

    with torch.no_grad():
        logits = model(**inputs).logits
    torch.testing.assert_close(logits, expected["logits"], rtol=0, atol=LOGIT_ATOL)
