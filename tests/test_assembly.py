"""FavorForConditionalGeneration.from_pretrained_components: a model assembled from separately saved tiny parts (a
Llama causal LM, a Whisper model, a BEATs model, an InstructBLIP model) holds exactly their encoder weights, gets a
fresh connector and a placeholder row, and trains on the synthetic audio-visual task."""

import pytest
import torch
from transformers import (
    AutoTokenizer,
    BertTokenizer,
    InstructBlipConfig,
    InstructBlipForConditionalGeneration,
    LlamaConfig,
    LlamaForCausalLM,
    WhisperConfig,
    WhisperFeatureExtractor,
    WhisperForConditionalGeneration,
)

from transformers_av import BeatsConfig, FavorForConditionalGeneration
from transformers_av.assembly import load_weights_with_prefixes, processor_from_components
from transformers_av.models.beats.modeling_beats import BeatsModel
from transformers_av.presets.tiny import (
    tiny_audio_config,
    tiny_qformer_config,
    tiny_speech_config,
    tiny_text_config,
    tiny_vision_config,
)
from transformers_av.presets.tiny import ASSETS
from transformers_av.training import FavorDataCollator, load_av_dataset, make_sync_task

IMAGE = 28


@pytest.fixture(scope="module")
def components(tmp_path_factory):
    """Four tiny pretrained parts saved the way their libraries save them; returns their folders and models."""
    root = tmp_path_factory.mktemp("components")
    torch.manual_seed(0)
    llm = LlamaForCausalLM(LlamaConfig(**{k: v for k, v in tiny_text_config(vocab_size=512).items() if k != "model_type"}))
    llm.save_pretrained(root / "llm")
    AutoTokenizer.from_pretrained(ASSETS / "llama_tokenizer").save_pretrained(root / "llm")

    whisper = WhisperForConditionalGeneration(WhisperConfig(**tiny_speech_config()))
    whisper.save_pretrained(root / "whisper")
    WhisperFeatureExtractor(feature_size=80).save_pretrained(root / "whisper")

    beats = BeatsModel(BeatsConfig(**tiny_audio_config()))
    beats.save_pretrained(root / "beats")

    blip_config = InstructBlipConfig(
        vision_config=tiny_vision_config(IMAGE), qformer_config=tiny_qformer_config(),
        text_config=tiny_text_config(vocab_size=300), num_query_tokens=32,
    )
    blip = InstructBlipForConditionalGeneration(blip_config)
    with torch.no_grad():  # make the query tokens recognisable (they are zeros after init)
        blip.query_tokens.normal_()
    blip.save_pretrained(root / "instructblip", max_shard_size="100KB")  # sharded: only the needed shards are read
    BertTokenizer(str(ASSETS / "bert_tokenizer" / "vocab.txt")).save_pretrained(root / "instructblip" / "qformer_tokenizer")
    return {"root": root, "llm": llm, "whisper": whisper, "beats": beats, "instructblip": blip}


def assemble(components, **settings):
    root = components["root"]
    return FavorForConditionalGeneration.from_pretrained_components(
        llm=root / "llm", speech_encoder=root / "whisper", audio_encoder=root / "beats",
        vision_encoder=root / "instructblip",
        connector_hidden_size=16, connector_num_hidden_layers=2, connector_num_attention_heads=2,
        connector_intermediate_size=48, connector_dropout=0.0, **settings,
    )


def assert_same_weights(module, reference):
    ours, theirs = module.state_dict(), reference.state_dict()
    assert ours.keys() == theirs.keys()
    for name, tensor in theirs.items():
        assert torch.equal(ours[name], tensor), name


def test_assembled_model_holds_the_components_weights(components):
    model = assemble(components)
    inner = model.model
    assert_same_weights(inner.speech_encoder, components["whisper"].model.encoder)
    assert_same_weights(inner.audio_encoder, components["beats"])
    assert_same_weights(inner.visual_encoder.vision_model, components["instructblip"].vision_model)
    assert_same_weights(inner.visual_encoder.qformer, components["instructblip"].qformer)
    assert torch.equal(inner.visual_encoder.query_tokens, components["instructblip"].query_tokens)
    # the LLM: every original row and layer, plus one row for <AV> (id 512 = the tokenizer's next id)
    llm = components["llm"]
    assert model.config.audio_visual_token_id == 512 and model.config.text_config.vocab_size == 513
    embeddings = inner.language_model.embed_tokens.weight
    assert embeddings.shape == (513, 64) and torch.equal(embeddings[:512], llm.model.embed_tokens.weight)
    assert torch.equal(model.lm_head.weight[:512], llm.lm_head.weight)
    for name, tensor in llm.model.layers.state_dict().items():
        assert torch.equal(inner.language_model.layers.state_dict()[name], tensor), name
    # nothing of the InstructBLIP LLM or the Whisper decoder came along
    names = set(model.state_dict())
    assert not any("decoder" in n and "speech_encoder" in n for n in names)
    assert not any(n.startswith("model.visual_encoder.qformer.") and "language" in n for n in names)
    # the connector is initialised by the model's rules (normal(0, 0.02) weights, no NaN), encoders frozen
    connector = inner.connector
    assert all(torch.isfinite(p).all() for p in connector.parameters())
    for weight in (connector.speech_projection.weight, connector.position_embedding.weight, connector.query_tokens[1]):
        assert 0.015 < float(weight.detach().std()) < 0.025
    assert not any(p.requires_grad for p in inner.speech_encoder.parameters())
    assert not inner.visual_encoder.query_tokens.requires_grad
    assert all(p.requires_grad for p in connector.parameters())
    # the sources are recorded for the model card
    assert model.config.speech_config._name_or_path == str(components["root"] / "whisper")
    assert model.config.vision_config._name_or_path == str(components["root"] / "instructblip")


def test_shard_selection_reads_only_the_requested_prefixes(components):
    tensors = load_weights_with_prefixes(components["root"] / "instructblip", ["qformer."])
    assert tensors and all(name.startswith("qformer.") for name in tensors)
    expected = {f"qformer.{k}": v for k, v in components["instructblip"].qformer.state_dict().items()}
    assert tensors.keys() == expected.keys()
    assert all(torch.equal(tensors[k], expected[k]) for k in expected)


def test_component_settings_conflicts_are_refused(components):
    with pytest.raises(ValueError, match="come from the components"):
        assemble(components, num_query_tokens=8)


def test_assembled_model_trains_on_the_synthetic_task(components, tmp_path):
    torch.manual_seed(0)
    root = components["root"]
    model = assemble(components)
    model.config.qformer_config.hidden_dropout_prob = 0.0
    processor = processor_from_components(
        model, llm=root / "llm", speech_encoder=root / "whisper", vision_encoder=root / "instructblip", video_fps=2.0,
    )
    assert processor.audio_visual_token_id == model.config.audio_visual_token_id
    make_sync_task(tmp_path / "task", 2, seconds=2, fps=4, size=(IMAGE, IMAGE))
    dataset = load_av_dataset(tmp_path / "task" / "data.jsonl")
    batch = FavorDataCollator(processor)([dataset[i] for i in range(len(dataset))])

    def loss():
        model.eval()
        with torch.no_grad():
            return float(model(**batch).lm_loss)

    before = loss()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=5e-3)
    model.train()
    for _ in range(6):
        optimizer.zero_grad()
        model(**batch).loss.backward()
        optimizer.step()
    after = loss()
    assert after < 0.6 * before, (before, after)  # the answer word becomes likely: the parts fit together
