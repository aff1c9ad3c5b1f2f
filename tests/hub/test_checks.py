"""Refused uploads (transformers_av.hub.checks): everything is checked before the first network call, so a refusal
sends nothing (`no_network`: the Hub client replaced by one that fails on any use; for the Audio-Visual LLM's
session push also on the local Hub server's request log)."""

import re

import pytest
from hub.helpers import AV_LLM, FAVOR, NUM_FRAMES

from transformers_av.hub import (
    UploadRefusedError,
    push_folder_to_hub,
    push_processor_to_hub,
    push_to_hub,
    validate_folder_for_upload,
    validate_processor_for_upload,
)
from transformers_av.presets.tiny import tiny_av_llm_processor, tiny_processor

NAN_REFUSALS = {  # the family's poisoned model is refused with: (pushing the model, pushing its saved folder)
    "favor": (r"model\.connector\.speech_projection\.weight: 3 NaN, 1 inf of",
              r"model\.safetensors:model\.connector\.speech_projection\.weight: 3 NaN"),
    "av_llm": (r"model\.connector\.audio_projection\.weight: 2 NaN, 0 inf of \d+ values",
               r"model\.safetensors:model\.vision_encoder\.\S+: 3 NaN"),
}


def test_nan_weights_are_refused_before_anything_is_sent(family, no_network, tmp_path):
    in_model, in_folder = NAN_REFUSALS[family.name]
    model = family.tiny_model(0)
    family.poison(model)
    with pytest.raises(UploadRefusedError, match=in_model):
        model.push_to_hub("user/broken")
    model.save_pretrained(tmp_path / "broken")
    with pytest.raises(UploadRefusedError, match=in_folder):
        push_folder_to_hub(tmp_path / "broken", "user/broken")
    assert no_network.calls == []


@pytest.mark.parametrize("family, token", [pytest.param("favor", "audio_visual_token_id", id="favor"),
                                           pytest.param("av_llm", "media_token_id", id="av_llm")], indirect=["family"])
def test_the_configuration_checks_run_before_anything_is_sent(family, token, no_network):
    model = family.tiny_model(0)
    setattr(model.config, token, 10_000)
    message = rf"{token} \(10000\) must be an id of the LLM vocabulary"
    with pytest.raises(UploadRefusedError, match=message):
        push_to_hub(model, "user/broken")
    with pytest.raises(UploadRefusedError, match=message):
        model.push_to_hub("user/broken")
    assert no_network.calls == []


@pytest.mark.parametrize("family, mismatched, message", [
    pytest.param("favor", lambda config: tiny_processor(FAVOR.config("favor")),
                 r"processor\.resolutions=\[\[10, 32\]\] but config\.resolutions=\[\[1, 3\], \[10, 30\]\]",
                 id="favor-resolutions"),
    pytest.param("av_llm", lambda config: tiny_av_llm_processor(config, num_frames=5),
                 r"processor\.num_frames=5 but config\.num_frames=3", id="av_llm-num_frames"),
    pytest.param("av_llm", lambda config: tiny_av_llm_processor(config, num_patches=9),
                 r"processor\.num_patches=9 but config\.num_patches=4", id="av_llm-num_patches"),
    pytest.param("av_llm", lambda config: tiny_av_llm_processor(config, num_audio_segments=4),
                 r"processor\.num_audio_segments=4 but config\.num_audio_segments=2", id="av_llm-num_audio_segments"),
], indirect=["family"])
def test_processor_settings_are_checked_against_the_config(family, mismatched, message, no_network):
    """Whichever upload carries the processor: the model's (with it), the processor's own, the module function."""
    model = family.tiny_model(0)
    config = model.config
    validate_processor_for_upload(family.processor(config), config)  # the matching processor passes
    processor = mismatched(config)
    with pytest.raises(UploadRefusedError, match=message):
        model.push_to_hub("user/broken", processor=processor)
    with pytest.raises(UploadRefusedError, match=message):
        processor.push_to_hub("user/broken", config=config)
    with pytest.raises(UploadRefusedError, match=message):
        push_processor_to_hub(processor, "user/broken", config=config)
    assert no_network.calls == []


def test_favor_configs_that_disagree_with_the_weights_are_refused(no_network):
    model = FAVOR.tiny_model(0)
    model.config.resolutions = [[1, 3], [10, 31]]
    with pytest.raises(UploadRefusedError, match="same number of tokens"):
        model.push_to_hub("user/broken")
    model = FAVOR.tiny_model(0)
    model.config.text_config.vocab_size = 600  # the embeddings were not resized
    with pytest.raises(UploadRefusedError, match=r"model\.language_model\.embed_tokens\.weight: weights \(513, 64\) but the configuration gives \(600, 64\)"):
        model.push_to_hub("user/broken")
    assert no_network.calls == []


def test_av_llm_processor_of_another_family_is_refused(no_network):
    with pytest.raises(UploadRefusedError, match="the processor is a FavorProcessor but the Audio-Visual LLM model"):
        AV_LLM.tiny_model(0).push_to_hub("user/broken", processor=tiny_processor())
    assert no_network.calls == []


def test_folder_validation_dispatches_on_the_saved_model_type(no_network, tmp_path):
    model = AV_LLM.tiny_model(0)
    model.save_pretrained(tmp_path / "good")
    AV_LLM.processor(model.config).save_pretrained(tmp_path / "good")
    config = validate_folder_for_upload(tmp_path / "good")
    assert type(config).__name__ == "AvLlmConfig" and config.num_frames == NUM_FRAMES
    model.save_pretrained(tmp_path / "bad")
    AV_LLM.processor(model.config, num_frames=5).save_pretrained(tmp_path / "bad")
    with pytest.raises(UploadRefusedError, match=r"processor\.num_frames=5 but config\.num_frames=3"):
        push_folder_to_hub(tmp_path / "bad", "user/broken")
    assert no_network.calls == []


# -- through the local Hub server: nothing reaches it -------------------------------------------------------------------
REFUSED_REPOS = ("user/av-llm-nan", "user/av-llm-nan-folder", "user/av-llm-wrong-ids", "user/av-llm-wrong-ids-processor")


def test_refused_uploads_create_nothing_on_the_server(server, av_llm_pushed):
    refusals = av_llm_pushed["refusals"]
    in_model, in_folder = NAN_REFUSALS["av_llm"]
    assert re.search(in_model, refusals["user/av-llm-nan"])
    assert re.search(in_folder, refusals["user/av-llm-nan-folder"])
    for repo_id in ("user/av-llm-wrong-ids", "user/av-llm-wrong-ids-processor"):
        message = refusals[repo_id]
        assert "the processor does not match the model" in message
        assert "'<VIS>' has id 513 in the tokenizer but config.visual_modality_token_id is 514" in message
        assert "'<AUD>' has id 514 in the tokenizer but config.audio_modality_token_id is 513" in message
    assert sorted(refusals) == sorted(REFUSED_REPOS)
    for repo_id in REFUSED_REPOS:
        assert not server.hub.repo_exists("model", repo_id), repo_id
        assert not any(request.repo_id == repo_id for request in server.requests), repo_id
    assert server.hub.repo_exists("model", AV_LLM.repo)
