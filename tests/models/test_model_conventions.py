"""Both families follow the same transformers conventions: output classes that extend transformers' own, documented
forwards (auto_docstring, nothing undocumented, nothing printed at import), one scheme of feature-method names,
`_no_split_modules` that reaches every tower, and model assembly that lives below the `assembly` layer."""

import subprocess
import sys

import pytest
import torch
from transformers.modeling_outputs import MultimodalBaseModelOutputWithPast, MultimodalCausalLMOutputWithPast

from transformers_av import (
    AvLlmConfig, AvLlmForConditionalGeneration, AvLlmModel, FavorConfig, FavorForConditionalGeneration, FavorModel,
)
from transformers_av.models.av_llm.modeling_av_llm import AvLlmCausalLMOutputWithPast, AvLlmModelOutputWithPast
from transformers_av.models.common.remote_code import source_modules
from transformers_av.models.favor.modeling_favor import FavorCausalLMOutputWithPast, FavorModelOutputWithPast
from transformers_av.presets.tiny import tiny_av_llm_config, tiny_favor_config

IMAGE = 28


def test_output_classes_extend_transformers_outputs_and_keep_their_fields():
    for model_output in (FavorModelOutputWithPast, AvLlmModelOutputWithPast):
        assert issubclass(model_output, MultimodalBaseModelOutputWithPast)
    for lm_output in (FavorCausalLMOutputWithPast, AvLlmCausalLMOutputWithPast):
        assert issubclass(lm_output, MultimodalCausalLMOutputWithPast)
    encoders = ["image_outputs", "video_outputs", "audio_outputs"]
    fields = list(FavorCausalLMOutputWithPast.__dataclass_fields__)
    assert fields[:8] == ["loss", "logits", "cache", "hidden_states", "attentions", *encoders]
    assert fields[8:] == ["lm_loss", "diversity_loss", "audio_visual_embeds"]
    assert list(FavorModelOutputWithPast.__dataclass_fields__)[-2:] == ["audio_visual_embeds", "diversity_loss"]
    assert list(AvLlmCausalLMOutputWithPast.__dataclass_fields__)[-1] == "media_embeds"
    # every extra field is documented in the class docstring, as transformers documents its own
    for cls, extra in ((FavorCausalLMOutputWithPast, fields[8:]), (AvLlmModelOutputWithPast, ["media_embeds"])):
        for name in extra + ["image_outputs", "cache", "logits" if "logits" in cls.__dataclass_fields__ else "last_hidden_state"]:
            assert f"{name} (" in cls.__doc__, (cls.__name__, name)
    # Trainer hands compute_metrics what is not ignored at inference: the logits alone
    for config_class, cls in ((FavorConfig, FavorCausalLMOutputWithPast), (AvLlmConfig, AvLlmCausalLMOutputWithPast)):
        kept = [f for f in cls.__dataclass_fields__ if f not in config_class.keys_to_ignore_at_inference]
        assert kept == ["loss", "logits", "hidden_states", "attentions"], kept


def test_importing_prints_nothing_and_warns_nothing():
    # auto_docstring prints "[ERROR] ..." for an undocumented argument or an unknown configuration
    code = "import warnings; warnings.simplefilter('error'); import transformers_av, transformers_av.assembly"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "", done.stdout
    assert "ERROR" not in done.stderr and "Warning" not in done.stderr, done.stderr


@pytest.mark.parametrize(
    "cls, documented",
    [
        (FavorModel, ["qformer_input_ids", "video_is_image", "input_features_mask", "audio_input_features", "modality_mask"]),
        (FavorForConditionalGeneration, ["labels", "qformer_attention_mask", "audio_input_features_mask", "lm_loss"]),
        (AvLlmModel, ["audio_segment_mask", "audio_is_longer", "video_frame_mask", "media_embeds"]),
        (AvLlmForConditionalGeneration, ["labels", "pixel_values_videos", "audio_input_features", "media_embeds"]),
    ],
)
def test_forward_docstrings_name_every_argument_and_output(cls, documented):
    doc = cls.forward.__doc__
    assert "Returns:" in doc and "tuple" in doc
    for name in documented:
        assert f"{name} (" in doc or f"**{name}**" in doc, name
    assert "[`FavorConfig`]" in doc or "[`AvLlmConfig`]" in doc


def test_both_families_share_the_feature_method_names():
    for model_class in (FavorModel, AvLlmModel):
        for name in ("get_visual_features", "get_audio_event_features", "get_media_features"):
            assert callable(getattr(model_class, name)), (model_class.__name__, name)
    for model_class in (FavorForConditionalGeneration, AvLlmForConditionalGeneration):
        assert callable(model_class.get_media_features)
    # the names of release 0.1 stay as aliases
    assert FavorModel.get_visual_tokens and FavorModel.get_audio_visual_features and AvLlmModel.get_media_embeds
    assert FavorForConditionalGeneration.get_audio_visual_features and AvLlmForConditionalGeneration.get_media_embeds


@torch.no_grad()
def test_aliases_return_what_the_new_names_return():
    torch.manual_seed(0)
    favor = FavorForConditionalGeneration(tiny_favor_config("video_salmonn", image_size=IMAGE)).eval()
    frames = torch.randn(1, 2, 3, IMAGE, IMAGE)
    assert torch.equal(favor.model.get_visual_tokens(frames), favor.model.get_visual_features(frames))
    media = {"pixel_values_videos": frames, "input_features": torch.randn(1, 80, 3000)}
    assert torch.equal(favor.get_audio_visual_features(**media).embeds, favor.get_media_features(**media).embeds)

    av_llm = AvLlmForConditionalGeneration(tiny_av_llm_config()).eval()
    media = {"pixel_values_videos": torch.randn(1, 4, 3, IMAGE, IMAGE), "audio_input_features": torch.randn(1, 2, 1, 201, 16)}
    new, old = av_llm.get_media_features(**media), av_llm.get_media_embeds(**media)
    assert torch.equal(new.embeds, old.embeds)
    assert torch.equal(new.temporal_tokens, av_llm.model.get_visual_features(media["pixel_values_videos"]).temporal_tokens)
    assert torch.equal(new.audio_tokens, av_llm.model.get_audio_event_features(media["audio_input_features"]))


def test_no_split_modules_reach_every_tower():
    with torch.device("meta"):
        favor = FavorForConditionalGeneration(tiny_favor_config("video_salmonn", image_size=IMAGE))
        av_llm = AvLlmForConditionalGeneration(tiny_av_llm_config())
    # the LLM's, Whisper's and BEATs' come from the sub-models; InstructBLIP's and CLIP's from inside our parts
    assert {"LlamaDecoderLayer", "WhisperEncoderLayer", "BeatsEncoderLayer", "InstructBlipEncoderLayer",
            "InstructBlipQFormerLayer", "CausalQFormerLayer"} <= set(favor._no_split_modules)
    assert {"LlamaDecoderLayer", "CLIPEncoderLayer", "ClapAudioStage"} <= set(av_llm._no_split_modules)
    # and each names a module class the model really holds (what accelerate's device map looks for)
    held = {type(m).__name__ for m in favor.modules()}
    assert {"LlamaDecoderLayer", "WhisperEncoderLayer", "InstructBlipEncoderLayer", "CausalQFormerLayer"} <= held


def test_model_code_reaches_assembly_without_the_assembly_layer():
    for family in ("favor", "av_llm"):
        reached = source_modules(f"transformers_av.models.{family}.modeling_{family}")
        assert "transformers_av.assembly" not in reached
        assert f"transformers_av.models.{family}.components_{family}" in reached  # travels with remote code too
        assert "transformers_av.models.common.components_common" in reached


@pytest.mark.parametrize("model_class", [FavorModel, FavorForConditionalGeneration, AvLlmModel, AvLlmForConditionalGeneration])
def test_past_key_values_is_the_deprecated_name_of_cache(model_class):
    # transformers 5.x renamed the argument; the old name still works, with transformers' FutureWarning
    from transformers.cache_utils import DynamicCache

    config = tiny_favor_config("favor", image_size=IMAGE) if "Favor" in model_class.__name__ else tiny_av_llm_config()
    torch.manual_seed(0)
    model = model_class(config).eval()
    ids = torch.randint(5, 100, (1, 6))
    text_config = config.get_text_config(decoder=True)
    with torch.no_grad(), pytest.warns(FutureWarning, match="`past_key_values` is deprecated.*Use `cache` instead"):
        old = model(input_ids=ids, use_cache=True, past_key_values=DynamicCache(config=text_config))
    with torch.no_grad():
        new = model(input_ids=ids, use_cache=True, cache=DynamicCache(config=text_config))
    assert torch.equal(old[0], new[0]) and old.cache.get_seq_length() == new.cache.get_seq_length() == 6


@torch.no_grad()
@pytest.mark.parametrize("name, prompt", [("tiny-favor", "What is shown?"), ("tiny-av-llm", "<VIS> What is shown?")])
def test_get_media_features_takes_a_processor_output_whole(name, prompt):
    # `model.get_media_features(**processor(...))`: the text inputs ride along; for the Audio-Visual LLM the modality
    # token of the prompt picks the media there as in forward (here: frames only, no CLAP token)
    import numpy as np

    from transformers_av.presets.tiny import TINY_MODELS

    torch.manual_seed(0)
    model, processor = TINY_MODELS[name].build(**({"image_size": IMAGE} if name == "tiny-favor" else {}))
    model.eval()
    rng = np.random.default_rng(0)
    inputs = processor(
        text=prompt, videos=[rng.integers(0, 256, (4, 32, 32, 3), dtype=np.uint8)],
        audio=[rng.standard_normal(16000).astype(np.float32)], sampling_rate=16000, answers=["a square"],
    )
    media = model.get_media_features(**inputs)
    forward = model(**inputs)
    merged = forward.audio_visual_embeds if name == "tiny-favor" else forward.media_embeds
    torch.testing.assert_close(media.embeds, merged, atol=0, rtol=0)
    if name == "tiny-av-llm":
        assert media.uses_visual.tolist() == [True] and media.audio_tokens is None
