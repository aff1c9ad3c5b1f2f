"""Official EVA ViT + InstructBLIP Q-Former -> InstructBlipVisionModel + InstructBlipQFormerModel: key mapping and
numerical parity with outputs of the official code (tiny video-SALMONN model, tests/fixtures/visual/)."""

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import InstructBlipQFormerModel, InstructBlipVisionModel

from transformers_av.conversion.visual import (
    LN_VISION_EPS,
    OFFICIAL_EVA_VIT_G,
    OFFICIAL_INSTRUCTBLIP_QFORMER,
    convert_visual_state_dict,
    visual_configs_from_official,
)

FIXTURE = Path(__file__).parents[1] / "fixtures" / "visual"
# Against outputs of the official EVA ViT / Q-Former computed on another machine: fp32 round-off of 2-layer towers on
# O(1) activations in other summation orders (no log / exp / FFT amplification); measured <= 2.6e-6 under every
# setting of tools/check_portability.sh: 1e-5.
ATOL = 1e-5


@pytest.fixture(scope="module")
def official():
    return load_file(str(FIXTURE / "official_visual.safetensors"))


@pytest.fixture(scope="module")
def data():
    return load_file(str(FIXTURE / "data.safetensors"))


@pytest.fixture(scope="module")
def converted(official):
    config = json.loads((FIXTURE / "config.json").read_text())
    vision_config, qformer_config = visual_configs_from_official(config["eva"], config["qformer"])
    state_dict, dropped = convert_visual_state_dict(official)
    vision = InstructBlipVisionModel(vision_config).eval()
    vision.post_layernorm.eps = LN_VISION_EPS  # ln_vision: 1e-5, the ViT blocks 1e-6
    qformer = InstructBlipQFormerModel(qformer_config).eval()

    def sub(prefix):
        return {k[len(prefix) :]: v for k, v in state_dict.items() if k.startswith(prefix)}

    vision.load_state_dict(sub("vision_model."), strict=True)
    qformer.load_state_dict(sub("qformer."), strict=True)
    assert set(state_dict) == {f"vision_model.{k}" for k in vision.state_dict()} | {
        f"qformer.{k}" for k in qformer.state_dict()
    } | {"query_tokens"}
    return vision, qformer, state_dict["query_tokens"], dropped


def test_configs(converted):
    vision, qformer, query_tokens, _ = converted
    vc, qc = vision.config, qformer.config
    assert (vc.hidden_size, vc.intermediate_size, vc.num_hidden_layers, vc.num_attention_heads) == (32, 139, 2, 4)
    assert (vc.image_size, vc.patch_size, vc.layer_norm_eps, vc.qkv_bias) == (224, 14, 1e-6, True)
    assert (qc.hidden_size, qc.num_hidden_layers, qc.num_attention_heads, qc.intermediate_size) == (16, 2, 2, 48)
    assert (qc.vocab_size, qc.cross_attention_frequency, qc.encoder_hidden_size, qc.layer_norm_eps) == (212, 2, 32, 1e-12)
    assert query_tokens.shape == (1, 32, 16)
    # the released sizes
    vc, qc = visual_configs_from_official(OFFICIAL_EVA_VIT_G, OFFICIAL_INSTRUCTBLIP_QFORMER)
    assert (vc.hidden_size, vc.intermediate_size, vc.num_hidden_layers, vc.num_attention_heads) == (1408, 6144, 39, 16)
    assert (vc.image_size, vc.patch_size, vc.layer_norm_eps) == (224, 14, 1e-6)
    assert (qc.hidden_size, qc.num_hidden_layers, qc.num_attention_heads, qc.intermediate_size) == (768, 12, 12, 3072)
    assert (qc.vocab_size, qc.cross_attention_frequency, qc.encoder_hidden_size) == (30523, 2, 1408)


def test_key_mapping(official, converted):
    _, _, _, dropped = converted
    assert set(dropped) == {"Qformer.bert.embeddings.position_ids"}
    state_dict, _ = convert_visual_state_dict(official)
    for i in range(2):
        bias = state_dict[f"vision_model.encoder.layers.{i}.self_attn.qkv.bias"]
        q, k, v = bias.chunk(3)
        # a pure copy into the fused qkv bias: exact
        torch.testing.assert_close(q, official[f"visual_encoder.blocks.{i}.attn.q_bias"], rtol=0, atol=0)
        torch.testing.assert_close(v, official[f"visual_encoder.blocks.{i}.attn.v_bias"], rtol=0, atol=0)
        assert not k.any()
    # keys of other modules are not consumed
    other = {k: torch.zeros(1) for k in ("speech_encoder.conv1.weight", "video_Qformer.bert.x", "video_query_tokens")}
    state_dict2, dropped2 = convert_visual_state_dict({**official, **other})
    assert state_dict2.keys() == state_dict.keys() and dropped2.keys() == dropped.keys()


def test_unexpected_keys_are_reported(official):
    bad = dict(official)
    bad["visual_encoder.norm.weight"] = torch.ones(32)
    bad["Qformer.bert.pooler.dense.weight"] = torch.ones(16, 16)
    with pytest.raises(ValueError, match=r"visual_encoder\.norm\.weight"):
        convert_visual_state_dict(bad)
    unexpected = []
    state_dict, _ = convert_visual_state_dict(bad, unexpected=unexpected)
    assert sorted(unexpected) == ["Qformer.bert.pooler.dense.weight", "visual_encoder.norm.weight"]
    assert state_dict.keys() == convert_visual_state_dict(official).state_dict.keys()
    # an MLM head is dropped with a reason, not silently
    _, dropped = convert_visual_state_dict({**official, "Qformer.cls.predictions.bias": torch.zeros(212)})
    assert "Qformer.cls.predictions.bias" in dropped and dropped["Qformer.cls.predictions.bias"]
    # half of an EVA q/v bias pair cannot be fused
    half = {k: v for k, v in official.items() if k != "visual_encoder.blocks.1.attn.v_bias"}
    with pytest.raises(ValueError, match=r"blocks\.1\.attn\.q_bias"):
        convert_visual_state_dict(half)


def _max_diff(a, b):
    return (a - b).abs().max().item()


def test_vision_parity(converted, data):
    vision, _, _, _ = converted
    captured = {}

    def keep_input(module, args, output):  # post_layernorm is called on the sequence, then on the pooled token
        captured.setdefault("pre", args[0])  # returns None: the output is left alone

    hook = vision.post_layernorm.register_forward_hook(keep_input)
    try:
        with torch.no_grad():
            out = vision(pixel_values=data["pixel_values"])
    finally:
        hook.remove()
    diff_eva = _max_diff(captured["pre"], data["eva_output"])
    torch.testing.assert_close(captured["pre"], data["eva_output"], rtol=0, atol=ATOL)
    # ln_vision_output of the first Q-Former frame is frame 0 as well
    expected_ln = data["ln_vision_output"][:1]
    diff_ln = _max_diff(out.last_hidden_state, expected_ln)
    torch.testing.assert_close(out.last_hidden_state, expected_ln, rtol=0, atol=ATOL)
    print(f"max abs diff: eva_output {diff_eva:.3g}, ln_vision_output {diff_ln:.3g}")


def _qformer(qformer, query_tokens, input_ids, attention_mask, image_embeds):
    batch = input_ids.shape[0]
    with torch.no_grad():
        return qformer(
            input_ids=input_ids,
            attention_mask=attention_mask,
            query_embeds=query_tokens.expand(batch, -1, -1),
            encoder_hidden_states=image_embeds,
            encoder_attention_mask=torch.ones(image_embeds.shape[:-1], dtype=torch.long),
        ).last_hidden_state


def test_qformer_parity(converted, data):
    _, qformer, query_tokens, _ = converted
    ids, mask = data["qformer_input_ids"], data["qformer_attention_mask"]
    out = _qformer(qformer, query_tokens, ids, mask, data["ln_vision_output"])
    expected = data["qformer_last_hidden_state"]
    assert out.shape == expected.shape == (2, 43, 16)
    diff = _max_diff(out, expected)
    torch.testing.assert_close(out, expected, rtol=0, atol=ATOL)
    print(f"max abs diff: qformer_last_hidden_state {diff:.3g}")


def test_end_to_end_parity(converted, data):
    """pixels -> ViT -> post_layernorm -> Q-Former, all converted, against the official output of frame 0."""
    vision, qformer, query_tokens, _ = converted
    with torch.no_grad():
        image_embeds = vision(pixel_values=data["pixel_values"]).last_hidden_state
    ids, mask = data["qformer_input_ids"][:1], data["qformer_attention_mask"][:1]
    out = _qformer(qformer, query_tokens, ids, mask, image_embeds)
    expected = data["qformer_last_hidden_state"][:1]
    diff = _max_diff(out, expected)
    torch.testing.assert_close(out, expected, rtol=0, atol=ATOL)
    print(f"max abs diff: end-to-end qformer_last_hidden_state {diff:.3g}")
