"""Audio-Visual LLM (Shu et al.) CLIP frame encoder (`models/common/clip_frames.py`).

Every encoder output is compared with a direct call of the transformers CLIP vision tower on the same inputs.
"""

from __future__ import annotations


import pytest
import torch
from safetensors.torch import load_file
from transformers import CLIPVisionModel

from transformers_av.models.av_llm.token_counts import clip_num_patches
from transformers_av.models.common.clip_frames import ClipFrameEncoder
from transformers_av.presets.tiny import tiny_clip_vision_config

from module_calls import batch_sizes_seen_by

# Same tower, same inputs, same process: our encoder wrappers vs a direct call of the transformers tower. Mostly the
# very same kernels on the same tensors (measured 0); where the batch differs (5 valid frames vs 2, a frame alone vs in
# a batch) the fp32 matmul blocking changes the summation order: a few ulps of O(1) values (measured <= 3.6e-7 under
# every setting of tools/check_portability.sh): 1e-6.
ATOL = 1e-6


def _random_frames(batch_size: int, num_frames: int, size: int, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(batch_size, num_frames, 3, size, size, generator=generator)



@pytest.fixture(scope="module")
def clip_encoder() -> ClipFrameEncoder:
    torch.manual_seed(0)
    return ClipFrameEncoder(tiny_clip_vision_config()).eval()


def test_clip_frames_match_direct_clip_call_and_skip_padding(clip_encoder):
    frames = _random_frames(3, 3, 28)
    mask = torch.tensor([[True, False, True], [True, True, True], [False, False, False]])
    frames[~mask] = float("nan")  # padding frames must never reach the ViT nor the spatial mean

    with torch.no_grad():
        with batch_sizes_seen_by(clip_encoder.vision_model.embeddings) as vit_batches:
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
        with batch_sizes_seen_by(penultimate.vision_model.encoder.layers[1]) as last_layer_calls:
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
