"""The connector's causal Q-Former through transformers' attention interface: eager and sdpa agree, the attention maps
have the official structure (block-triangular over 32-token frames, padding masked in cross-attention only), and the
composite model's `attn_implementation` reaches it."""

import pytest
import torch
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

from connector_reference import per_resolution_connector, per_window_connector
from transformers_av import FavorForConditionalGeneration
from transformers_av.models.favor.qformer import QFormerWindows, eager_attention_forward, qformer_attention_function
from transformers_av.models.favor.windows import window_plan
from transformers_av.presets.tiny import tiny_favor_config
from transformers_av.testing.reference import randomized_connector

# fp32, same weights and inputs: eager (matmul, softmax, matmul) and sdpa (one fused kernel) differ only in rounding
# order, ~1e-7 relative per product; through two LayerNorm'd layers and the projection that stays far below 1e-5,
# while a wrong mask or scale moves outputs by 1e-2 or more.
ATOL = 1e-5
TOKENS_PER_FRAME = 32


def connector_for(implementation, **overrides):
    connector = randomized_connector(tiny_favor_config("video_salmonn", **overrides))
    connector.config._attn_implementation = implementation
    return connector


def joint_tokens(connector, frame_counts, seed=1):
    generator = torch.Generator().manual_seed(seed)
    width = connector.config.joint_feature_size
    tokens = torch.randn(len(frame_counts), max(frame_counts), TOKENS_PER_FRAME, width, generator=generator)
    for b, count in enumerate(frame_counts):
        tokens[b, count:] = 0  # the synchroniser's zeros beyond a sample's frames
    return tokens, torch.tensor(frame_counts)


class SdpaCalls:
    """Counts calls of torch's scaled_dot_product_attention (what the sdpa interface runs)."""

    def __init__(self, monkeypatch):
        self.count = 0
        original = torch.nn.functional.scaled_dot_product_attention

        def counting(*args, **kwargs):
            self.count += 1
            return original(*args, **kwargs)

        monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention", counting)


@pytest.mark.parametrize("causal", ["future", "past", "none"])
@torch.inference_mode()
def test_eager_and_sdpa_give_the_same_connector_outputs(causal, monkeypatch):
    calls = SdpaCalls(monkeypatch)
    outputs = {}
    for implementation in ("eager", "sdpa"):
        connector = connector_for(implementation, causal_attention=causal)
        tokens, counts = joint_tokens(connector, [25, 8])  # partial and all-padding windows
        before = calls.count
        outputs[implementation] = connector(tokens, counts)
        layers = connector.config.connector_num_hidden_layers
        resolutions = connector.config.resolutions
        # per layer and resolution: the query self-attention and the cross-attention, plus the frame-level block's
        # one call per query frame of a window (it computes only the key frames that frame may see)
        window_calls = sum(k for k, _ in resolutions) if causal != "none" else 0
        expected_calls = 0 if implementation == "eager" else layers * (window_calls + 2 * len(resolutions))
        assert calls.count - before == expected_calls
    eager, sdpa = outputs["eager"], outputs["sdpa"]
    torch.testing.assert_close(sdpa.embeds, eager.embeds, atol=ATOL, rtol=0)
    for a, b in zip(sdpa.resolution_outputs, eager.resolution_outputs):
        torch.testing.assert_close(a, b, atol=ATOL, rtol=0)
    assert (sdpa.embeds - eager.embeds).abs().max() > 0  # two genuinely different kernels ran


def frame_of(length):
    return torch.arange(length) // TOKENS_PER_FRAME


@torch.inference_mode()
def test_attention_maps_shapes_rows_and_masks():
    connector = connector_for("eager", causal_attention="future")
    config = connector.config
    frame_counts = [25, 8]
    tokens, counts = joint_tokens(connector, frame_counts)
    out = connector(tokens, counts, output_attentions=True)
    plans = [window_plan(c, config.resolutions) for c in frame_counts]
    padded = max(p.padded_frames for p in plans)  # 30 frames: 3 coarse windows of 10, 30 fine windows of 1
    heads, batch = config.connector_num_attention_heads, len(frame_counts)
    layers = config.connector_num_hidden_layers
    assert len(out.window_attentions) == len(out.query_attentions) == len(out.cross_attentions) == layers

    for r, (k, n) in enumerate(config.resolutions):
        windows, length = padded // k, k * TOKENS_PER_FRAME
        # frame validity of every window's keys, rows = (sample, window)
        valid = (torch.arange(padded)[None] < counts[:, None]).reshape(batch * windows, k)
        valid_keys = valid.repeat_interleave(TOKENS_PER_FRAME, 1)  # (B * W, L)
        causal_ok = frame_of(length)[None, :] >= frame_of(length)[:, None]  # key frame j >= query frame i
        for layer in range(layers):
            window = out.window_attentions[layer][r]
            query = out.query_attentions[layer][r]
            cross = out.cross_attentions[layer][r]
            assert window.shape == (batch * windows, heads, length, length)
            assert query.shape == (batch * windows, heads, n, n)
            assert cross.shape == (batch * windows, heads, n, length)
            for attention in (window, query, cross):
                torch.testing.assert_close(attention.sum(-1), torch.ones(attention.shape[:-1]), atol=1e-5, rtol=0)
            # block-triangular over frames: exactly 0 on earlier frames, > 0 on the frame itself and later ones,
            # padding frames included (the official causal block ignores the padding mask)
            assert torch.all(window[..., ~causal_ok] == 0)
            assert torch.all(window[..., causal_ok] > 0)
            # cross-attention: exactly 0 on padding-frame keys, except windows made only of padding, which the
            # reference implementation lets attend uniformly to their own tokens
            has_content = valid.any(-1)
            masked_keys = (~valid_keys & has_content[:, None])[:, None, None, :].expand_as(cross)
            assert torch.all(cross[masked_keys] == 0)
            assert torch.all(cross[~masked_keys] > 0)
            empty = cross[~has_content]
            if empty.numel():
                torch.testing.assert_close(empty, torch.full_like(empty, 1 / length), atol=1e-6, rtol=0)
            assert torch.all(query > 0)


@torch.inference_mode()
def test_attention_maps_equal_the_references_and_need_no_eager_config():
    """The batched layout returns the maps the per-window and per-resolution references compute; a model configured
    for sdpa still returns them (output_attentions runs the eager path) with the same outputs."""
    connector = connector_for("sdpa", causal_attention="future")
    tokens, counts = joint_tokens(connector, [25, 8])
    batched = connector(tokens, counts, output_attentions=True)
    plain = connector(tokens, counts)
    assert plain.window_attentions is None and plain.cross_attentions is None
    torch.testing.assert_close(batched.embeds, plain.embeds, atol=ATOL, rtol=0)
    for reference in (per_window_connector, per_resolution_connector):
        expected = reference(connector, tokens, counts, output_attentions=True)
        for kind in ("window_attentions", "query_attentions", "cross_attentions"):
            for got_layer, expected_layer in zip(getattr(batched, kind), getattr(expected, kind)):
                for got, want in zip(got_layer, expected_layer, strict=True):
                    assert got.shape == want.shape
                    torch.testing.assert_close(got, want, atol=1e-6, rtol=0)


@pytest.mark.parametrize("implementation", ["eager", "sdpa"])
@pytest.mark.parametrize("causal", ["future", "past"])
@torch.inference_mode()
def test_causal_direction_of_the_frame_level_block(causal, implementation):
    """Official rule ("future"): frame i attends frames j >= i, so changing frame j changes the block's output for
    frames 0..j and leaves frames after j untouched; "past" is the mirror image."""
    connector = connector_for(implementation, causal_attention=causal)
    config = connector.config
    block = connector.qformer.layers[0].window_attention
    frames = config.coarsest_window_frames
    length, width = frames * TOKENS_PER_FRAME, config.joint_feature_size
    generator = torch.Generator().manual_seed(3)
    features = torch.randn(length, width, generator=generator)
    changed_frame = 4
    edited = features.clone()
    rows = slice(changed_frame * TOKENS_PER_FRAME, (changed_frame + 1) * TOKENS_PER_FRAME)
    edited[rows] += torch.randn(edited[rows].shape, generator=generator)

    def block_output(tokens):  # the frame-level block over one window of `frames` frames
        windows = QFormerWindows(
            features=tokens, positions=[torch.randn(length, width, generator=torch.Generator().manual_seed(4))],
            window_lengths=[length], key_padding=[None], tokens_per_frame=TOKENS_PER_FRAME, causal_attention=causal,
        )
        (output, _), = block.window_outputs(windows)
        return output

    before, after = block_output(features), block_output(edited)
    per_frame_change = (after - before).abs().reshape(frames, -1).amax(-1)
    sees_change = torch.arange(frames) <= changed_frame if causal == "future" else torch.arange(frames) >= changed_frame
    # frames that may not attend the edited frame: unchanged up to kernel rounding (the edited keys get weight 0)
    assert torch.all(per_frame_change[~sees_change] <= 1e-6), per_frame_change
    assert torch.all(per_frame_change[sees_change] > 1e-3), per_frame_change
    if implementation == "eager":
        assert torch.all(per_frame_change[~sees_change] == 0)


def test_flash_and_flex_fall_back_to_sdpa_and_none_means_sdpa():
    config = tiny_favor_config("video_salmonn")
    sdpa = ALL_ATTENTION_FUNCTIONS["sdpa"]
    for implementation, expected in [
        (None, sdpa), ("sdpa", sdpa), ("eager", eager_attention_forward),
        ("flash_attention_2", sdpa), ("flex_attention", sdpa),
    ]:
        config._attn_implementation = implementation
        assert qformer_attention_function(config) is expected, implementation
        assert qformer_attention_function(config, output_attentions=True) is eager_attention_forward


@torch.inference_mode()
def test_composite_model_attn_implementation_reaches_connector_and_beats(monkeypatch):
    config = tiny_favor_config("video_salmonn")
    config._attn_implementation = "eager"
    model = FavorForConditionalGeneration(config).eval()
    inner = model.model
    assert inner.connector.qformer.layers[0].cross_attention.config is model.config
    assert inner.audio_encoder.config._attn_implementation == "eager"
    calls = SdpaCalls(monkeypatch)
    tokens, counts = joint_tokens(inner.connector, [12])
    eager = inner.connector(tokens, counts)
    audio = torch.randn(1, 64, config.audio_config.num_mel_bins)
    eager_audio = inner.audio_encoder(audio).last_hidden_state
    assert calls.count == 0

    model.set_attn_implementation("sdpa")
    assert model.config._attn_implementation == inner.audio_encoder.config._attn_implementation == "sdpa"
    sdpa = inner.connector(tokens, counts)
    assert calls.count > 0
    count = calls.count
    sdpa_audio = inner.audio_encoder(audio).last_hidden_state
    assert calls.count - count == config.audio_config.encoder_layers
    torch.testing.assert_close(sdpa.embeds, eager.embeds, atol=ATOL, rtol=0)
    torch.testing.assert_close(sdpa_audio, eager_audio, atol=ATOL, rtol=0)


def test_the_model_returns_the_connector_attention_maps():
    # FavorModel.get_media_features(output_attentions=True) hands out exactly the maps its connector computes
    torch.manual_seed(0)
    model = FavorForConditionalGeneration(tiny_favor_config("video_salmonn", image_size=28)).eval()
    inner = model.model
    visual = torch.randn(2, 6, inner.config.num_query_tokens, inner.config.visual_feature_size)
    audio = torch.randn(2, 6 * inner.config.audio_frames_per_frame, inner.config.joint_feature_size
                        - inner.config.visual_feature_size)
    with torch.no_grad():
        media = inner.get_media_features(visual_tokens=visual, audio_tokens=audio, output_attentions=True)
        direct = inner.connector(media.joint_tokens, media.frame_counts, output_attentions=True)
        plain = inner.get_media_features(visual_tokens=visual, audio_tokens=audio)
    assert plain.window_attentions is None and plain.query_attentions is None and plain.cross_attentions is None
    # the maps come from the eager kernel, the plain call runs sdpa: same products, other summation order (see ATOL)
    torch.testing.assert_close(media.embeds, plain.embeds, atol=ATOL, rtol=0)
    for name in ("window_attentions", "query_attentions", "cross_attentions"):
        ours, theirs = getattr(media, name), getattr(direct, name)
        assert len(ours) == inner.config.connector_num_hidden_layers, name
        for layer_ours, layer_theirs in zip(ours, theirs):
            assert len(layer_ours) == len(inner.config.resolutions)
            for a, b in zip(layer_ours, layer_theirs):
                assert torch.equal(a, b), name
