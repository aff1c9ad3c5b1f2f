"""AvLlmForConditionalGeneration.from_pretrained_components: an Audio-Visual LLM assembled from separately saved tiny
parts (a Llama causal LM with its tokenizer, a two-tower CLIPModel, a two-tower ClapModel) holds exactly their
tower weights, gets fresh projectors and four new token rows whose ids the assembled processor agrees with."""

import pytest
import torch
from transformers import (
    AutoTokenizer,
    ClapConfig,
    ClapFeatureExtractor,
    ClapModel,
    ClapTextConfig,
    CLIPConfig,
    CLIPImageProcessor,
    CLIPModel,
    CLIPTextConfig,
    LlamaConfig,
    LlamaForCausalLM,
)

from transformers_av import AvLlmForConditionalGeneration
from transformers_av.assembly import av_llm_processor_from_components
from transformers_av.testing import make_av_clip
from transformers_av.presets.tiny import tiny_text_config
from transformers_av.presets.tiny import tiny_clap_audio_config, tiny_clip_vision_config
from transformers_av.presets.tiny import ASSETS

TINY_TEXT_TOWER = {"vocab_size": 99, "hidden_size": 32, "intermediate_size": 37, "num_hidden_layers": 1,
                   "num_attention_heads": 4, "projection_dim": 16}


@pytest.fixture(scope="module")
def components(tmp_path_factory):
    root = tmp_path_factory.mktemp("av_llm_components")
    torch.manual_seed(0)
    llm = LlamaForCausalLM(LlamaConfig(**{k: v for k, v in tiny_text_config(vocab_size=512).items() if k != "model_type"}))
    llm.save_pretrained(root / "llm")
    AutoTokenizer.from_pretrained(ASSETS / "llama_tokenizer").save_pretrained(root / "llm")

    clip = CLIPModel(CLIPConfig(text_config=CLIPTextConfig(**TINY_TEXT_TOWER).to_dict(),
                                vision_config=tiny_clip_vision_config().to_dict(), projection_dim=16))
    clip.save_pretrained(root / "clip", max_shard_size="50KB")  # sharded: only the vision shards are read
    CLIPImageProcessor(size={"shortest_edge": 28}, crop_size={"height": 28, "width": 28}).save_pretrained(root / "clip")

    clap = ClapModel(ClapConfig(text_config=ClapTextConfig(**{k: v for k, v in TINY_TEXT_TOWER.items()}).to_dict(),
                                audio_config=tiny_clap_audio_config().to_dict(), projection_dim=16)).eval()
    clap.save_pretrained(root / "clap")
    ClapFeatureExtractor(feature_size=16, sampling_rate=16000, hop_length=160, max_length_s=2, fft_window_size=400,
                         frequency_max=8000, truncation="rand_trunc").save_pretrained(root / "clap")
    return {"root": root, "llm": llm, "clip": clip, "clap": clap}


def test_assembled_av_llm_holds_the_towers_and_matches_its_processor(components, tmp_path):
    root = components["root"]
    model = AvLlmForConditionalGeneration.from_pretrained_components(
        llm=root / "llm", vision_encoder=root / "clip", audio_encoder=root / "clap", num_frames=4,
        num_audio_segments=2, audio_sampling_rate=16000,
    )
    inner = model.model
    for ours, theirs in ((inner.vision_encoder.vision_model.state_dict(), components["clip"].vision_model.state_dict()),
                         (inner.audio_encoder.audio_model.state_dict(), components["clap"].audio_model.state_dict())):
        assert ours.keys() == theirs.keys()
        for name, tensor in theirs.items():
            assert torch.equal(ours[name], tensor), name
    # the LLM: its 512 rows unchanged, 4 new rows (<av_media>, <VIS>, <AUD>, <AUD_VIS> = 512..515) at their mean
    llm = components["llm"]
    embeddings = model.get_input_embeddings().weight
    assert embeddings.shape[0] == 516
    assert torch.equal(embeddings[:512], llm.get_input_embeddings().weight)
    assert torch.equal(model.lm_head.weight[:512], llm.lm_head.weight)
    assert [model.config.media_token_id, model.config.visual_modality_token_id, model.config.audio_modality_token_id,
            model.config.audio_visual_modality_token_id] == [512, 513, 514, 515]
    assert model.config.vision_config._name_or_path == str(root / "clip")
    # encoders frozen, projectors and LLM trainable, projectors freshly initialised (std = initializer_range)
    assert not any(p.requires_grad for p in inner.vision_encoder.parameters())
    assert not any(p.requires_grad for p in inner.audio_encoder.parameters())
    assert all(p.requires_grad for p in inner.connector.parameters())
    # sample std of a normal(0, 0.02) init over thousands of weights: ~1% sampling error, 10% bound
    assert inner.connector.audio_projection.weight.std().item() == pytest.approx(0.02, rel=0.1)

    processor = av_llm_processor_from_components(model, llm=root / "llm", vision_encoder=root / "clip",
                                                 audio_encoder=root / "clap")
    clip_path = make_av_clip(tmp_path / "clip.mp4", seconds=2.0, fps=4, size=(32, 32)).path
    batch = processor(text=["<AUD_VIS> What happens?"], videos=[str(clip_path)], answers=["a beep"])
    assert int((batch["input_ids"] == 512).sum()) == 4 + 4 + 2  # T + P + K
    # the towers compute what the CLIP / CLAP models compute on the same inputs
    model.eval()
    with torch.no_grad():
        media = inner.get_media_embeds(pixel_values_videos=batch["pixel_values_videos"],
                                       audio_input_features=batch["audio_input_features"])
        clip_cls = components["clip"].vision_model(pixel_values=batch["pixel_values_videos"][0]).last_hidden_state[:, 0]
        clap_out = components["clap"].audio_model(input_features=batch["audio_input_features"][0]).last_hidden_state
    # same towers and inputs in the same process, only the batch layout differs: fp32 rounding (measured 0)
    assert torch.allclose(media.temporal_tokens[0], clip_cls, atol=1e-5)
    assert torch.allclose(media.audio_tokens[0], clap_out.flatten(1), atol=1e-5)
    loss = model(**batch).loss
    assert torch.isfinite(loss)


def test_components_fill_the_configuration(components):
    root = components["root"]
    with pytest.raises(ValueError, match="come from the components"):
        AvLlmForConditionalGeneration.from_pretrained_components(
            llm=root / "llm", vision_encoder=root / "clip", audio_encoder=root / "clap", media_token_id=3)
