"""The official BEATs fixture, shared by the BEATs tests: tests/fixtures/beats (regenerate with
tests/fixtures/beats/make_fixture.py)."""

import json
from pathlib import Path

import numpy as np
from safetensors.torch import load_file

FIXTURE = Path(__file__).parents[0] / "fixtures" / "beats"
DATA_KEYS = ("waveform_int16", "beats_fbank", "beats_output")


def load_official_fixture():
    """(official cfg dict, official state dict, data: waveform_int16 / beats_fbank / beats_output)."""
    tensors = load_file(str(FIXTURE / "official_beats.safetensors"))
    data = {k: tensors.pop(k) for k in DATA_KEYS}
    cfg = json.loads((FIXTURE / "official_cfg.json").read_text())
    return cfg, tensors, data


def official_waveform(data) -> np.ndarray:
    # the official BEATs input: waveform_int16 / 32768 (what soundfile returns) zero-padded to 3 s
    waveform = data["waveform_int16"].numpy().astype(np.float64) / 32768
    return np.pad(waveform, (0, 48000 - waveform.shape[0]))
