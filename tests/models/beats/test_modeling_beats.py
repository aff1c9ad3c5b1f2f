"""BEATs self-attention through transformers' attention interface: eager and sdpa both reproduce the official
encoder, the relative position bias (gated) and the padding reach every implementation as one additive mask, and
the attention maps have the right shape, rows and zeros."""

import copy
import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from transformers_av.conversion.beats import beats_config_from_official, convert_beats_state_dict
from transformers_av.models.beats.modeling_beats import BeatsModel

FIXTURE = Path(__file__).parents[2] / "fixtures" / "beats"
# fp32: the official code and our eager path shift scores by their row maximum before scaling, sdpa's kernel does
# its own max-subtraction; the orders of rounding differ by ~1e-7 per product, far below 1e-5 after two layers,
# while dropping or mis-gating the relative position bias changes outputs by 1e-2 or more.
ATOL = 1e-5


@pytest.fixture(scope="module")
def official():
    tensors = load_file(str(FIXTURE / "official_beats.safetensors"))
    fbank, expected = tensors.pop("beats_fbank"), tensors.pop("beats_output")
    del tensors["waveform_int16"]
    config = beats_config_from_official(json.loads((FIXTURE / "official_cfg.json").read_text()))
    return config, convert_beats_state_dict(tensors, config), fbank, expected


def build(official, implementation):
    config, state_dict, _, _ = official
    # a copy: models built from one config object share (and overwrite) its attention implementation
    model = BeatsModel._from_config(copy.deepcopy(config), attn_implementation=implementation).eval()
    model.load_state_dict(state_dict)
    return model


def padded_batch(fbank):
    """The official clip and its first 160 frames (80 tokens) zero-padded to 298 frames (144 tokens)."""
    features = fbank.repeat(2, 1, 1)
    features[1, 160:] = 0
    mask = torch.ones(2, fbank.shape[1], dtype=torch.long)
    mask[1, 160:] = 0
    return features, mask


def test_default_is_sdpa_and_the_implementation_can_be_switched(official):
    assert BeatsModel(copy.deepcopy(official[0])).config._attn_implementation == "sdpa"
    model = build(official, "eager")
    assert model.config._attn_implementation == "eager"
    assert BeatsModel._can_set_attn_implementation()
    model.set_attn_implementation("sdpa")
    assert model.config._attn_implementation == "sdpa"
    with pytest.raises((ValueError, ImportError)):
        model.set_attn_implementation("flex_attention")  # flex reads one head of a tensor mask: not offered


@torch.inference_mode()
def test_eager_and_sdpa_match_the_official_encoder_and_each_other(official):
    _, _, fbank, expected = official
    features, mask = padded_batch(fbank)
    outputs = {}
    for implementation in ("eager", "sdpa"):
        model = build(official, implementation)
        alone = model(fbank).last_hidden_state
        assert (alone - expected).abs().max() <= ATOL, implementation
        outputs[implementation] = model(features, attention_mask=mask).last_hidden_state
    torch.testing.assert_close(outputs["sdpa"], outputs["eager"], atol=ATOL, rtol=0)
    torch.testing.assert_close(outputs["sdpa"][0], expected[0], atol=ATOL, rtol=0)
    # the official mask makes the short sample's tokens >= 80 keys nobody attends: its real tokens are those of the
    # 160-frame clip alone
    short = build(official, "sdpa")(fbank[:, :160]).last_hidden_state
    torch.testing.assert_close(outputs["sdpa"][1, :80], short[0], atol=ATOL, rtol=0)


@torch.inference_mode()
def test_attention_maps(official):
    config, _, fbank, _ = official
    features, mask = padded_batch(fbank)
    eager = build(official, "eager")
    out = eager(features, attention_mask=mask, output_attentions=True)
    tokens, heads = out.last_hidden_state.shape[1], config.encoder_attention_heads
    assert len(out.attentions) == config.encoder_layers
    padded_keys = torch.arange(tokens) >= 80
    for attention in out.attentions:
        assert attention.shape == (2, heads, tokens, tokens)
        torch.testing.assert_close(attention.sum(-1), torch.ones(2, heads, tokens), atol=1e-5, rtol=0)
        assert torch.all(attention[1][..., padded_keys] == 0)
        assert torch.all(attention[1][..., ~padded_keys] > 0) and torch.all(attention[0] > 0)
    # the maps carry the relative position bias: without it they change
    with torch.no_grad():
        eager.encoder.layers[0].self_attn.relative_attention_bias.weight.zero_()
    unbiased = eager(features, attention_mask=mask, output_attentions=True).attentions[0]
    assert (unbiased - out.attentions[0]).abs().max() > 1e-3

    # a model set to sdpa computes the maps on the eager path: same maps, same outputs
    sdpa = build(official, "sdpa")
    assert sdpa.config._attn_implementation == "sdpa"
    with_maps = sdpa(features, attention_mask=mask, output_attentions=True)
    reference = build(official, "eager")(features, attention_mask=mask, output_attentions=True)
    for got, want in zip(with_maps.attentions, reference.attentions, strict=True):
        assert torch.equal(got, want)
    assert torch.equal(with_maps.last_hidden_state, reference.last_hidden_state)
    assert sdpa(features, attention_mask=mask).attentions is None
