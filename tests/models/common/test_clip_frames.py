"""Audio-Visual LLM (Shu et al.) leaf parts: CLIP frame encoder, CLAP segment encoder, linear connector.

Every encoder output is compared with a direct call of the transformers tower on the same inputs; the connector layout
is written out by hand.
"""

from __future__ import annotations

from contextlib import contextmanager

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from transformers import ClapAudioConfig, ClapAudioModel, ClapFeatureExtractor, CLIPVisionModel

from transformers_av.models.av_llm.clap_segments import ClapSegmentEncoder
from transformers_av.models.av_llm.linear_connector import LinearAudioVisualConnector
from transformers_av.models.av_llm.token_counts import (
    clap_flat_token_size,
    clip_num_patches,
    linear_connector_token_count,
    split_into_segments,
)
from transformers_av.models.common.clip_frames import ClipFrameEncoder
from transformers_av.presets.tiny import tiny_clap_audio_config, tiny_clip_vision_config

# Same tower, same inputs, same process: our encoder wrappers vs a direct call of the transformers tower. Mostly the
# very same kernels on the same tensors (measured 0); where the batch differs (5 valid frames vs 2, a frame alone vs in
# a batch) the fp32 matmul blocking changes the summation order: a few ulps of O(1) values (measured <= 3.6e-7 under
# every setting of tools/check_portability.sh): 1e-6.
ATOL = 1e-6


def _random_frames(batch_size: int, num_frames: int, size: int, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(batch_size, num_frames, 3, size, size, generator=generator)


@contextmanager
def _batch_sizes_seen_by(module: torch.nn.Module):
    """Yields a list that collects the leading (batch) size of every input `module` receives inside the block."""
    sizes: list[int] = []
    handle = module.register_forward_hook(lambda _module, args, _output: sizes.append(args[0].shape[0]))
    try:
        yield sizes
    finally:
        handle.remove()


# ---------------------------------------------------------------------------------------------------------------------
# ClipFrameEncoder
# ---------------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def clip_encoder() -> ClipFrameEncoder:
    torch.manual_seed(0)
    return ClipFrameEncoder(tiny_clip_vision_config()).eval()


def test_clip_frames_match_direct_clip_call_and_skip_padding(clip_encoder):
    frames = _random_frames(3, 3, 28)
    mask = torch.tensor([[True, False, True], [True, True, True], [False, False, False]])
    frames[~mask] = float("nan")  # padding frames must never reach the ViT nor the spatial mean

    with torch.no_grad():
        with _batch_sizes_seen_by(clip_encoder.vision_model.embeddings) as vit_batches:
            out = clip_encoder(frames, mask)
        assert vit_batches == [5]  # one ViT call on the 5 valid frames
        direct = clip_encoder.vision_model(frames[mask]).last_hidden_state  # (5, 1 + P, D), batch-major valid frames

    assert out.temporal_tokens.shape == (3, 3, 32) and out.spatial_tokens.shape == (3, 4, 32)
    assert clip_encoder.num_patches == clip_num_patches(clip_encoder.config) == 4
    assert torch.equal(out.frame_mask, mask) and out.frame_tokens is None
    assert not out.temporal_tokens.isnan().any() and not out.spatial_tokens.isnan().any()
    # temporal: the [CLS] of each valid frame, in place; zeros at padding frames
    torch.testing.assert_close(out.temporal_tokens[0, 0], direct[0, 0], rtol=0, atol=ATOL)
    torch.testing.assert_close(out.temporal_tokens[0, 2], direct[1, 0], rtol=0, atol=ATOL)
    torch.testing.assert_close(out.temporal_tokens[1], direct[2:5, 0], rtol=0, atol=ATOL)
    assert torch.equal(out.temporal_tokens[0, 1], torch.zeros(32))
    assert torch.equal(out.temporal_tokens[2], torch.zeros(3, 32))
    # spatial: patch tokens averaged over the valid frames only
    torch.testing.assert_close(out.spatial_tokens[0], (direct[0, 1:] + direct[1, 1:]) / 2, rtol=0, atol=ATOL)
    torch.testing.assert_close(out.spatial_tokens[1], direct[2:5, 1:].mean(dim=0), rtol=0, atol=ATOL)
    assert torch.equal(out.spatial_tokens[2], torch.zeros(4, 32))


def test_clip_frames_default_mask_is_all_valid_and_batch_independent(clip_encoder):
    frames = _random_frames(2, 2, 28, seed=1)
    with torch.no_grad():
        out = clip_encoder(frames)
        alone = clip_encoder(frames[1:])
        direct = clip_encoder.vision_model(frames.flatten(0, 1))
    assert out.frame_mask.all()
    torch.testing.assert_close(out.temporal_tokens.flatten(0, 1), direct.last_hidden_state[:, 0], rtol=0, atol=ATOL)
    torch.testing.assert_close(out.temporal_tokens[1], alone.temporal_tokens[0], rtol=0, atol=ATOL)
    torch.testing.assert_close(out.spatial_tokens[1], alone.spatial_tokens[0], rtol=0, atol=ATOL)


def test_clip_feature_layer_and_post_layernorm():
    torch.manual_seed(1)
    config = tiny_clip_vision_config()
    penultimate = ClipFrameEncoder(config, feature_layer=-2, apply_post_layernorm=True).eval()
    frames = _random_frames(1, 2, 28, seed=2)
    with torch.no_grad():
        with _batch_sizes_seen_by(penultimate.vision_model.encoder.layers[1]) as last_layer_calls:
            out = penultimate(frames)
        direct = penultimate.vision_model(frames[0], output_hidden_states=True)
        expected = penultimate.vision_model.post_layernorm(direct.hidden_states[-2])  # (2, 1 + P, D)
    assert penultimate.num_layers_run == 1
    assert last_layer_calls == []  # layers after feature_layer are not run
    torch.testing.assert_close(out.temporal_tokens[0], expected[:, 0], rtol=0, atol=ATOL)
    torch.testing.assert_close(out.spatial_tokens[0], expected[:, 1:].mean(dim=0), rtol=0, atol=ATOL)

    pooled_cls = ClipFrameEncoder(config, apply_post_layernorm=True).eval()
    pooled_cls.load_state_dict(penultimate.state_dict())
    with torch.no_grad():
        out = pooled_cls(frames)
    torch.testing.assert_close(out.temporal_tokens[0], direct.pooler_output, rtol=0, atol=ATOL)

    with pytest.raises(ValueError, match="feature_layer=3"):
        ClipFrameEncoder(config, feature_layer=3)


def test_clip_pooled_tokens_per_frame_equal_manual_pooling():
    torch.manual_seed(2)
    encoder = ClipFrameEncoder(tiny_clip_vision_config(image_size=56), pooled_tokens_per_frame=4).eval()  # 4x4 grid
    frames = _random_frames(2, 2, 56, seed=3)
    mask = torch.tensor([[True, True], [True, False]])
    with torch.no_grad():
        out = encoder(frames, mask)
        patches = encoder.vision_model(frames[mask]).last_hidden_state[:, 1:]  # (3, 16, D), row-major 4x4 grid
    # 4x4 -> 2x2: every output token is the mean of one 2x2 block; grid index = 4 * row + col
    blocks = patches.reshape(3, 2, 2, 2, 2, 32)  # (frame, out_row, in_row, out_col, in_col, D)
    manual = blocks.mean(dim=(2, 4)).reshape(3, 4, 32)
    torch.testing.assert_close(manual[:, 0], patches[:, [0, 1, 4, 5]].mean(dim=1), rtol=0, atol=ATOL)
    assert out.frame_tokens.shape == (2, 2, 4, 32)
    torch.testing.assert_close(out.frame_tokens[mask], manual, rtol=0, atol=ATOL)
    assert torch.equal(out.frame_tokens[1, 1], torch.zeros(4, 32))

    for bad in (0, 3, 25):
        with pytest.raises(ValueError, match=f"pooled_tokens_per_frame={bad}"):
            ClipFrameEncoder(tiny_clip_vision_config(image_size=56), pooled_tokens_per_frame=bad)


def test_clip_frames_reject_bad_inputs(clip_encoder):
    with pytest.raises(ValueError, match="pixel_values_videos frames are 56x56"):
        clip_encoder(_random_frames(1, 1, 56))
    with pytest.raises(ValueError, match="pixel_values_videos must have shape"):
        clip_encoder(torch.zeros(1, 3, 28, 28))
    with pytest.raises(ValueError, match="video_frame_mask has shape"):
        clip_encoder(_random_frames(1, 2, 28), torch.ones(1, 3, dtype=torch.bool))


def test_clip_tower_weights_load_bit_exact(tmp_path, clip_encoder):
    torch.manual_seed(3)
    reference = CLIPVisionModel(tiny_clip_vision_config()).eval()
    reference.save_pretrained(tmp_path)
    saved = load_file(tmp_path / "model.safetensors")  # transformers-5 CLIPVisionModel keys: no prefix
    fresh = ClipFrameEncoder(tiny_clip_vision_config()).eval()
    result = fresh.load_tower_state_dict(saved)
    assert not result.missing_keys and not result.unexpected_keys
    for name, tensor in reference.state_dict().items():
        assert torch.equal(fresh.state_dict()[f"vision_model.{name}"], tensor), name

    # CLIPModel layout: the vision half under vision_model.*, plus keys that do not belong to the tower
    clip_model_layout = {f"vision_model.{k}": v for k, v in saved.items()}
    clip_model_layout.update({"logit_scale": torch.tensor(2.0), "text_model.embeddings.x": torch.zeros(1)})
    clip_encoder.load_tower_state_dict(clip_model_layout)
    frames = _random_frames(1, 2, 28, seed=4)
    with torch.no_grad():
        out = clip_encoder(frames)
        expected = CLIPVisionModel.from_pretrained(tmp_path).eval()(frames[0]).last_hidden_state
    assert torch.equal(out.temporal_tokens[0], expected[:, 0])


# ---------------------------------------------------------------------------------------------------------------------
# split_into_segments / ClapSegmentEncoder
# ---------------------------------------------------------------------------------------------------------------------


def test_split_into_segments_by_hand():
    waveform = np.arange(10, dtype=np.float32)
    segments = split_into_segments(waveform, 4)  # 10 // 4 = 2 samples each, samples 8 and 9 dropped
    assert [s.tolist() for s in segments] == [[0, 1], [2, 3], [4, 5], [6, 7]]
    assert all(np.shares_memory(s, waveform) for s in segments)
    assert [len(s) for s in split_into_segments(np.zeros(48000 * 3 + 3), 4)] == [36000] * 4
    assert [s.tolist() for s in split_into_segments(np.arange(4.0), 4)] == [[0.0], [1.0], [2.0], [3.0]]
    assert [s.tolist() for s in split_into_segments(np.arange(3.0), 1)] == [[0.0, 1.0, 2.0]]
    with pytest.raises(ValueError, match="waveform has 3 samples, fewer than num_segments=4"):
        split_into_segments(np.zeros(3), 4)
    with pytest.raises(ValueError, match="waveform has 0 samples"):
        split_into_segments(np.zeros(0), 4)
    with pytest.raises(ValueError, match="waveform must be mono"):
        split_into_segments(np.zeros((100, 2)), 4)
    with pytest.raises(ValueError, match="num_segments must be a positive integer"):
        split_into_segments(np.zeros(100), 0)


def _segment_features(num_segments: int = 4) -> torch.Tensor:
    """(K, 1, 101, 16) CLAP features of the K segments of a 4 s two-tone clip at 48 kHz."""
    rate = 48000
    time = np.arange(4 * rate) / rate
    waveform = (0.5 * np.sin(2 * np.pi * 440 * time) * (time < 2) + 0.3 * np.sin(2 * np.pi * 1500 * time)).astype(
        np.float32
    )
    extractor = ClapFeatureExtractor(feature_size=16, max_length_s=1, truncation="rand_trunc", padding="repeatpad")
    segments = split_into_segments(waveform, num_segments)  # 1 s each = max_length_s: no random truncation
    features = extractor(segments, sampling_rate=rate, return_tensors="pt")["input_features"]
    return features  # (K, 1, 101, 16)


def test_clap_segments_match_direct_clap_call_per_segment():
    torch.manual_seed(4)
    config = tiny_clap_audio_config()
    encoder = ClapSegmentEncoder(config).eval()
    features = _segment_features()
    assert features.shape == (4, 1, 101, 16)
    batch = torch.stack([features, features.flip(0)])  # (2, K=4, 1, 101, 16)
    mask = torch.tensor([[True, True, True, True], [True, False, True, False]])
    batch[~mask] = float("nan")

    with torch.no_grad():
        with _batch_sizes_seen_by(encoder.audio_model.audio_encoder.patch_embed) as tower_batches:
            tokens = encoder(batch, mask)
        assert tower_batches == [6]  # one call, valid segments only
        direct = [
            encoder.audio_model(input_features=batch[b, k][None]).last_hidden_state.flatten()
            for b, k in mask.nonzero().tolist()
        ]

    assert encoder.flat_token_size == clap_flat_token_size(config) == 32 * 1 * 16
    assert tokens.shape == (2, 4, 512) and not tokens.isnan().any()
    for (b, k), expected in zip(mask.nonzero().tolist(), direct):
        torch.testing.assert_close(tokens[b, k], expected, rtol=0, atol=ATOL)
    assert torch.equal(tokens[1, 1], torch.zeros(512)) and torch.equal(tokens[1, 3], torch.zeros(512))
    torch.testing.assert_close(tokens[1, 0], tokens[0, 3], rtol=0, atol=ATOL)  # same segment, other batch row
    assert not torch.allclose(tokens[0, 0], tokens[0, 3])  # different segments: O(1) apart (measured 1.5)

    with torch.no_grad():
        assert torch.equal(encoder(batch, torch.zeros(2, 4, dtype=torch.bool)), torch.zeros(2, 4, 512))
    with pytest.raises(ValueError, match="input_features has 8 mel bins"):
        encoder(torch.zeros(1, 4, 1, 101, 8))
    with pytest.raises(ValueError, match="segment_mask has shape"):
        encoder(batch, mask[:, :2])
    with pytest.raises(ValueError, match="input_features must have shape"):
        encoder(features)


def test_clap_flat_token_size_from_config_alone():
    # laion/clap-htsat-*: 4 stages, 96 * 2**3 = 768 channels on a (256 / 4 / 8) ** 2 = 64 token grid
    assert clap_flat_token_size(ClapAudioConfig()) == 768 * 64
    three_stages = ClapAudioConfig(
        depths=[1, 1, 1], num_attention_heads=[1, 2, 4], patch_embeds_hidden_size=8, spec_size=128,
        num_mel_bins=32, window_size=4, patch_size=4, patch_stride=4,
    )  # fmt: skip
    assert clap_flat_token_size(three_stages) == 32 * (128 // 4 // 4) ** 2
    with torch.device("meta"):
        on_meta = ClapSegmentEncoder(three_stages)
    assert on_meta.flat_token_size == 2048
    torch.manual_seed(5)
    encoder = ClapSegmentEncoder(three_stages).eval()
    with torch.no_grad():
        tokens = encoder(torch.randn(1, 1, 1, 40, 32))
    assert tokens.shape == (1, 1, 2048)


def test_clap_tower_weights_load_bit_exact(tmp_path):
    torch.manual_seed(6)
    reference = ClapAudioModel(tiny_clap_audio_config()).eval()
    reference.save_pretrained(tmp_path)
    saved = load_file(tmp_path / "model.safetensors")  # ClapAudioModel keys: audio_encoder.*
    encoder = ClapSegmentEncoder(tiny_clap_audio_config()).eval()
    result = encoder.load_tower_state_dict(saved)
    assert not result.missing_keys and not result.unexpected_keys
    for name, tensor in reference.state_dict().items():
        assert torch.equal(encoder.state_dict()[f"audio_model.{name}"], tensor), name

    clap_model_layout = {f"audio_model.{k}": v for k, v in saved.items()}
    clap_model_layout.update({"logit_scale_a": torch.tensor(1.0), "text_model.embeddings.x": torch.zeros(1)})
    other = ClapSegmentEncoder(tiny_clap_audio_config()).eval()
    other.load_tower_state_dict(clap_model_layout)
    features = _segment_features()[None]  # (1, 4, 1, 101, 16)
    with torch.no_grad():
        expected = ClapAudioModel.from_pretrained(tmp_path).eval()(input_features=features[0]).last_hidden_state
        assert torch.equal(other(features)[0], expected.flatten(1))


# ---------------------------------------------------------------------------------------------------------------------
# LinearAudioVisualConnector / linear_connector_token_count
# ---------------------------------------------------------------------------------------------------------------------


def _marked_connector() -> LinearAudioVisualConnector:
    """Dv = Da = 2 -> D_llm = 4: each projection copies its input to dims 0-1 and writes a marker in dim 2."""
    connector = LinearAudioVisualConnector(vision_hidden_size=2, audio_hidden_size=2, text_hidden_size=4)
    copy = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0], [0.0, 0.0]])
    for marker, layer in enumerate(
        (connector.temporal_projection, connector.spatial_projection, connector.audio_projection), start=1
    ):
        with torch.no_grad():
            layer.weight.copy_(copy)
            layer.bias.copy_(torch.tensor([0.0, 0.0, float(marker), 0.0]))
    return connector


def test_linear_connector_layout_by_hand():
    connector = _marked_connector()
    temporal = torch.tensor([[[1.0, 1], [9, 9], [2, 2]], [[9, 9], [9, 9], [9, 9]], [[3, 3], [4, 4], [5, 5]]])
    frame_mask = torch.tensor([[True, False, True], [False, False, False], [True, True, True]])
    spatial = torch.tensor([[[10.0, 0], [11, 0]], [[9, 9], [9, 9]], [[12, 0], [13, 0]]])  # (B=3, P=2, 2)
    audio = torch.tensor([[[20.0, 1], [21, 1], [9, 9]], [[9, 9], [22, 1], [23, 1]], [[9, 9], [9, 9], [9, 9]]])
    segment_mask = torch.tensor([[True, True, False], [False, True, True], [False, False, False]])

    embeds, counts = connector(temporal, frame_mask, spatial, audio, segment_mask)

    def t(a, b):  # temporal / spatial / audio token as the marked projections write it
        return [a, b, 1.0, 0.0]

    def s(a, b):
        return [a, b, 2.0, 0.0]

    def a(x, y):
        return [x, y, 3.0, 0.0]

    pad = [0.0, 0.0, 0.0, 0.0]
    expected = torch.tensor(
        [
            [t(1, 1), t(2, 2), s(10, 0), s(11, 0), a(20, 1), a(21, 1)],  # video + audio
            [a(22, 1), a(23, 1), pad, pad, pad, pad],  # no valid frame: audio only
            [t(3, 3), t(4, 4), t(5, 5), s(12, 0), s(13, 0), pad],  # no valid segment: video only
        ]
    )
    assert torch.equal(counts, torch.tensor([6, 2, 5]))
    assert torch.equal(embeds, expected)
    assert counts.tolist() == [
        linear_connector_token_count(2, 2, 2, visual=True, audio=True),
        linear_connector_token_count(0, 2, 2, visual=False, audio=True),
        linear_connector_token_count(3, 2, 0, visual=True, audio=False),
    ]

    embeds.sum().backward()
    for layer in (connector.temporal_projection, connector.spatial_projection, connector.audio_projection):
        assert layer.weight.grad is not None and layer.weight.grad.abs().sum() > 0


def test_linear_connector_absent_modality_is_not_computed():
    connector = _marked_connector()
    calls: list[str] = []
    for name in ("temporal_projection", "spatial_projection", "audio_projection"):
        getattr(connector, name).register_forward_hook(lambda *_, name=name: calls.append(name))
    audio = torch.tensor([[[5.0, 6.0], [7.0, 8.0]]])
    with torch.no_grad():
        embeds, counts = connector(audio_tokens=audio)
    assert calls == ["audio_projection"]
    assert torch.equal(counts, torch.tensor([2]))
    assert torch.equal(embeds, torch.tensor([[[5.0, 6.0, 3.0, 0.0], [7.0, 8.0, 3.0, 0.0]]]))

    calls.clear()
    with torch.no_grad():
        embeds, counts = connector(torch.ones(2, 1, 2), None, torch.zeros(2, 3, 2))
    assert calls == ["temporal_projection", "spatial_projection"]
    assert counts.tolist() == [4, 4] and embeds.shape == (2, 4, 4)
    assert torch.equal(embeds[:, 1:, 2], torch.full((2, 3), 2.0))


def test_linear_connector_and_count_errors():
    assert linear_connector_token_count(8, 256, 4, visual=True, audio=True) == 268
    assert linear_connector_token_count(8, 256, 4, visual=True, audio=False) == 264
    assert linear_connector_token_count(0, 256, 4, visual=False, audio=True) == 4
    assert linear_connector_token_count(0, 256, 0, visual=False, audio=False) == 0
    with pytest.raises(ValueError, match="visual=True needs num_frames >= 1"):
        linear_connector_token_count(0, 256, 4, visual=True, audio=True)
    with pytest.raises(ValueError, match="audio=True needs num_segments >= 1"):
        linear_connector_token_count(2, 256, 0, visual=True, audio=True)
    with pytest.raises(ValueError, match="num_patches must be a non-negative integer"):
        linear_connector_token_count(2, -1, 0, visual=True, audio=False)

    connector = LinearAudioVisualConnector(vision_hidden_size=2, audio_hidden_size=None, text_hidden_size=4)
    with pytest.raises(ValueError, match="no audio projection"):
        connector(audio_tokens=torch.zeros(1, 4, 2))
    with pytest.raises(ValueError, match="must be given together"):
        connector(temporal_tokens=torch.zeros(1, 2, 2))
    with pytest.raises(ValueError, match="temporal_tokens has width 3"):
        connector(torch.zeros(1, 2, 3), None, torch.zeros(1, 4, 3))
    with pytest.raises(ValueError, match="frame_mask has shape"):
        connector(torch.zeros(1, 2, 2), torch.ones(1, 3, dtype=torch.bool), torch.zeros(1, 4, 2))
    with pytest.raises(ValueError, match="needs vision_hidden_size or audio_hidden_size"):
        LinearAudioVisualConnector(None, None, 4)
