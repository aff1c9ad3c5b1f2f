"""The configurations of every family: save/load round trips, derived sizes from sub-configurations alone, and
inconsistent settings refused with an error naming the field."""

import pytest
import torch
from transformers import AutoConfig

from transformers_av import BeatsConfig
from transformers_av.models import FAMILIES
from transformers_av.models.favor.visual_encoders import build_visual_encoder, register_visual_encoder
from transformers_av.presets.tiny import tiny_av_llm_config, tiny_clip_vision_config, tiny_favor_config

CONFIGS = {
    "video_salmonn": lambda: tiny_favor_config("video_salmonn"),
    "favor": lambda: tiny_favor_config("favor"),
    "av_llm": tiny_av_llm_config,
    "beats": lambda: BeatsConfig(),
}


@pytest.mark.parametrize("name", list(CONFIGS))
def test_save_and_auto_load_round_trip(tmp_path, name):
    config = CONFIGS[name]()
    config.save_pretrained(tmp_path)
    loaded = AutoConfig.from_pretrained(tmp_path)
    assert type(loaded) is type(config)
    saved, original = loaded.to_dict(), config.to_dict()
    assert saved.pop("_name_or_path") == str(tmp_path)  # where it was loaded from; everything else is equal
    original.pop("_name_or_path")
    assert saved == original
    assert FAMILIES[config.model_type].config_class is type(config)


def test_favor_derived_sizes():
    salmonn, favor = tiny_favor_config("video_salmonn"), tiny_favor_config("favor")
    # InstructBLIP frames leave through the visual Q-Former: its width is the visual token width
    assert salmonn.visual_feature_size == salmonn.qformer_config.hidden_size
    assert salmonn.joint_feature_size == 3 * salmonn.visual_feature_size  # visual | Whisper | BEATs
    assert favor.joint_feature_size == 2 * favor.visual_feature_size  # no BEATs
    assert salmonn.resolutions == [[1, 3], [10, 30]] and favor.resolutions == [[10, 32]]
    clip = tiny_favor_config("favor", vision_config=tiny_clip_vision_config(84).to_dict(), num_query_tokens=36)
    assert not clip.uses_instruction_qformer and clip.visual_feature_size == clip.vision_config.hidden_size


def test_a_visual_part_of_another_width_is_refused_when_the_model_is_built():
    class WiderFrames(torch.nn.Module):
        @staticmethod
        def feature_size(config):
            return config.vision_config.hidden_size + 1

        def forward(self, frames, qformer_input_ids=None, qformer_attention_mask=None):
            raise AssertionError("never built")

    register_visual_encoder("wider_test_vision_model", WiderFrames)
    config = tiny_favor_config("favor", vision_config=tiny_clip_vision_config(84).to_dict(), num_query_tokens=36)
    config.vision_config.model_type = "wider_test_vision_model"
    with pytest.raises(ValueError, match=r"WiderFrames makes tokens of width 33, but FavorConfig.visual_feature_size "
                                         r"is 32"):
        build_visual_encoder(config)


def test_av_llm_derived_sizes():
    config = tiny_av_llm_config()
    assert config.num_patches == (28 // 14) ** 2 == 4
    assert config.audio_token_size == 32 * 1 * 16  # last HTSAT stage width x its grid (see presets.tiny)
    assert config.modality_token_ids == {"visual": 513, "audio": 514, "audio_visual": 515}


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"resolutions": [[1, 3], [10, 32]]}, "every resolution must produce the same number of tokens"),
        ({"resolutions": [[3, 3], [10, 10]]}, "the coarsest window \\(10 frames\\) must be a multiple of every window length, got 3"),
        ({"resolutions": []}, "`resolutions` must list at least one"),
        ({"diversity_loss_resolutions": [5]}, "diversity_loss_resolutions index 5 is outside resolutions"),
        ({"audio_chunk_seconds": 20.0}, "audio_chunk_seconds \\(20.0\\) must equal the Whisper encoder's input length"),
    ],
)
def test_inconsistent_favor_settings_are_refused(overrides, message):
    with pytest.raises(ValueError, match="Invalid FavorConfig: " + message):
        tiny_favor_config("video_salmonn", **overrides)


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"num_frames": 0}, "num_frames must be a positive integer, got 0"),
        ({"audio_modality_token_id": 513}, "the media and modality token ids must differ"),
    ],
)
def test_inconsistent_av_llm_settings_are_refused(overrides, message):
    with pytest.raises(ValueError, match="Invalid AvLlmConfig: " + message):
        tiny_av_llm_config(**overrides)

