"""Folders saved by the first release (tests/fixtures/release_0_1, made by its make_fixture.py at commit d92ee97) load
with today's code through the Auto classes and give that release's numbers: processor outputs and logits."""

import importlib.util
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForMultimodalLM, AutoProcessor

import transformers_av  # noqa: F401  (registers the Auto classes)

RELEASE = Path(__file__).parent / "fixtures" / "release_0_1"
_spec = importlib.util.spec_from_file_location("release_fixture", RELEASE / "make_fixture.py")
release_fixture = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(release_fixture)

# Same code path, same inputs, but a different process and possibly another CPU (AVX2 / AVX-512 kernels, other
# thread counts): the resize, the log-mel FFT and the matmuls may round differently in the last float32 bits. Pixels
# and model logits go through O(100) accumulations of O(1) values: 1e-5. Log-mel entries are logs of spectral
# energies; low-energy bins amplify FFT round-off (see tests/test_beats.py): 1e-4 there.
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
    for key, value in stored.items():
        ours = release_fixture.thin(inputs[key])
        assert ours.shape == value.shape and ours.dtype == value.dtype, key
        if value.is_floating_point():
            atol = PIXEL_ATOL if "pixel" in key else FEATURE_ATOL
            torch.testing.assert_close(ours, value, rtol=0, atol=atol, msg=key)
        else:
            assert torch.equal(ours, value), key

    with torch.no_grad():
        logits = model(**inputs).logits
    torch.testing.assert_close(logits, expected["logits"], rtol=0, atol=LOGIT_ATOL)
