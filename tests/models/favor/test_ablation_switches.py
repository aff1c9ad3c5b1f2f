"""The papers' ablation switches of FavorConfig: no synchronisation (streams side by side), zero-masked resolutions.
Parity with the official code (switches off, the defaults) is tested in tests/test_official_parity.py."""

import pytest
import torch
from huggingface_hub.errors import StrictDataclassFieldValidationError

from transformers_av.models.favor.connector import FavorConnector
from transformers_av.models.favor.sync import sync_audio_to_frames
from transformers_av.presets.tiny import tiny_favor_config


def test_without_synchronisation_the_streams_are_separate_tokens_side_by_side():
    # 1 sample, 2 frames of N=4 visual tokens (Dv=1), 3 audio frames per frame (Da=1), as in test_sync.py
    visual = torch.arange(8, dtype=torch.float32).reshape(1, 2, 4, 1) + 100
    audio = torch.arange(6, dtype=torch.float32).reshape(1, 6, 1) + 1
    counts = torch.tensor([2])
    paired = sync_audio_to_frames(visual, audio, counts, counts, audio_frames_per_frame=3)
    side_by_side = sync_audio_to_frames(visual, audio, counts, counts, audio_frames_per_frame=3, interleave=False)
    assert side_by_side.shape == (1, 2, 8, 2)
    # tokens 0..3 of a frame: [visual_k | 0]; tokens 4..7: [0 | audio_k] -- the same values, never in one token
    assert side_by_side[0, :, :4].tolist() == [[[100, 0], [101, 0], [102, 0], [103, 0]],
                                               [[104, 0], [105, 0], [106, 0], [107, 0]]]
    assert side_by_side[0, :, 4:].tolist() == [[[0, 1], [0, 2], [0, 3], [0, 0]], [[0, 4], [0, 5], [0, 6], [0, 0]]]
    torch.testing.assert_close(side_by_side[..., :4, :1], paired[..., :1], rtol=0, atol=0)
    torch.testing.assert_close(side_by_side[..., 4:, 1:], paired[..., 1:], rtol=0, atol=0)


def test_a_zero_masked_resolution_reaches_the_projection_as_zeros():
    torch.manual_seed(0)
    config = tiny_favor_config("video_salmonn")
    connector = FavorConnector(config).eval()
    torch.nn.init.normal_(connector.query_tokens[0], std=0.5)
    torch.nn.init.normal_(connector.query_tokens[1], std=0.5)
    joint = torch.randn(2, 12, config.num_query_tokens, config.joint_feature_size)
    counts = torch.tensor([12, 7])
    full = connector(joint, counts)
    for masked in ([0], [1]):
        connector.config = tiny_favor_config("video_salmonn", masked_resolutions=masked)
        out = connector(joint, counts)
        kept = 1 - masked[0]
        torch.testing.assert_close(out.resolution_outputs[kept], full.resolution_outputs[kept], rtol=0, atol=0)
        assert out.resolution_outputs[masked[0]].abs().sum() == 0
        parts = [torch.zeros_like(full.resolution_outputs[0])] * 2
        parts[kept] = full.resolution_outputs[kept]
        # the concat merge's one Linear sees zeros where the masked resolution was (its bias stays)
        torch.testing.assert_close(out.embeds, connector.projection(torch.cat(parts, dim=-1)), rtol=0, atol=1e-6)
        assert not torch.allclose(out.embeds, full.embeds)


def test_a_model_without_synchronisation_trains_on_twice_the_tokens_per_frame():
    from transformers_av.models import FavorForConditionalGeneration

    torch.manual_seed(0)
    config = tiny_favor_config("video_salmonn", image_size=28, audio_visual_sync="none")
    assert config.tokens_per_frame == 2 * config.num_query_tokens
    model = FavorForConditionalGeneration(config)
    frames = torch.randn(1, 4, 3, 28, 28)
    features = model.model.get_media_features(
        pixel_values_videos=frames, video_frame_mask=torch.ones(1, 4, dtype=torch.bool),
        input_features=torch.randn(1, 80, 3000), input_features_mask=torch.ones(1, 3000, dtype=torch.long),
    )
    assert features.joint_tokens.shape[2] == 2 * config.num_query_tokens
    # the window plan (and so the processor's placeholder count) does not change: 30 s of audio = 60 frames
    from transformers_av.models.favor.windows import window_plan

    assert features.embeds.shape[1] == int(features.token_counts[0]) == window_plan(60, config.resolutions).num_tokens


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"audio_visual_sync": "late"}, r"'audio_visual_sync' expected one of \('frame', 'none'\), got late"),
        ({"masked_resolutions": [2]}, r"masked_resolutions index 2 is outside resolutions \(0\.\.1\)"),
        ({"audio_visual_sync": "none", "max_window_positions": 400}, r"holds 640 tokens"),
    ],
)
def test_bad_switch_values_are_named(overrides, message):
    # a value outside the Literal is refused by the config dataclass itself, the rest by FavorConfig's own checks
    with pytest.raises((StrictDataclassFieldValidationError, ValueError), match=message):
        tiny_favor_config("video_salmonn", **overrides)
