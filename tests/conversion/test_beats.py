"""BEATs checkpoint conversion (`conversion/beats.py`) of the official checkpoint.

Fixture: tests/fixtures/beats (regenerate with tests/fixtures/beats/make_fixture.py).
"""

import pytest
import torch

from transformers_av.conversion.beats import beats_config_from_official, convert_beats_state_dict

from beats_fixture import load_official_fixture


@pytest.fixture(scope="module")
def fixture():
    return load_official_fixture()


def test_conversion_errors(fixture):
    cfg, official, _ = fixture
    config = beats_config_from_official(cfg)
    report = []
    with_head = {**official, "predictor.weight": torch.zeros(527, 32), "predictor.bias": torch.zeros(527)}
    converted = convert_beats_state_dict(with_head, config, report=report)
    assert any(r.startswith("predictor.weight") for r in report)
    assert any(r.startswith("encoder.layers.1.self_attn.relative_attention_bias") for r in report)
    assert "encoder.pos_conv.conv.weight" in converted and not any("predictor" in k for k in converted)
    # the folded weight-norm weight is exactly what torch's weight_norm computes
    conv = torch.nn.utils.parametrizations.weight_norm(torch.nn.Conv1d(32, 32, 128, padding=64, groups=16), dim=2)
    with torch.no_grad():
        conv.parametrizations.weight.original0.copy_(official["encoder.pos_conv.0.weight_g"])
        conv.parametrizations.weight.original1.copy_(official["encoder.pos_conv.0.weight_v"])
        assert torch.equal(conv.weight, converted["encoder.pos_conv.conv.weight"])

    broken = dict(official)
    broken.pop("encoder.layers.1.fc1.bias")
    broken["encoder.extra.weight"] = torch.zeros(1)
    pattern = r"(?s)unexpected keys \(1\).*encoder\.extra\.weight.*missing keys \(1\).*layers\.1\.fc1\.bias"
    with pytest.raises(ValueError, match=pattern):
        convert_beats_state_dict(broken, config)
    aliased = dict(official)
    aliased["encoder.layers.1.self_attn.relative_attention_bias.weight"] = torch.zeros(320, 4)
    with pytest.raises(ValueError, match="relative position"):
        convert_beats_state_dict(aliased, config)
    with pytest.raises(ValueError, match="Unknown keys"):
        beats_config_from_official({**cfg, "bogus": 1})
    # absent entries take the OFFICIAL defaults, not BeatsConfig's
    minimal = beats_config_from_official({"input_patch_size": 16})
    assert (minimal.deep_norm, minimal.max_distance, minimal.dropout) == (False, 1280, 0.1)
