"""from_pretrained_components for both families: a model assembled from separately saved tiny parts holds exactly
their tower weights, gets fresh new parts (connector, new token rows) and agrees with its assembled processor.

FAVOR: a Llama causal LM, a Whisper model, a BEATs model and an InstructBLIP model; it gets a fresh connector and a
placeholder row, and trains on the synthetic audio-visual task. Audio-Visual LLM: a Llama causal LM with its tokenizer,
a two-tower CLIPModel and a two-tower ClapModel; it gets fresh projectors and four new token rows whose ids the
assembled processor agrees with."""

from dataclasses import dataclass
from typing import Callable

import pytest
import torch
from transformers import (
    AutoTokenizer,
    BertTokenizer,
    ClapConfig,
    ClapFeatureExtractor,
    ClapModel,
    ClapTextConfig,
    CLIPConfig,
    CLIPImageProcessor,
    CLIPModel,
    CLIPTextConfig,
    InstructBlipConfig,
    InstructBlipForConditionalGeneration,
    LlamaConfig,
    LlamaForCausalLM,
    WhisperConfig,
    WhisperFeatureExtractor,
    WhisperForConditionalGeneration,
)

from transformers_av import AvLlmForConditionalGeneration, BeatsConfig, FavorForConditionalGeneration
from transformers_av.assembly import (
    av_llm_processor_from_components,
    load_weights_with_prefixes,
    processor_from_components,
)
from transformers_av.models.beats.modeling_beats import BeatsModel
from transformers_av.presets.tiny import (
    ASSETS,
    tiny_audio_config,
    tiny_clap_audio_config,
    tiny_clip_vision_config,
    tiny_qformer_config,
    tiny_speech_config,
    tiny_text_config,
    tiny_vision_config,
)
from transformers_av.testing import make_av_clip
from transformers_av.training import FavorDataCollator, load_av_dataset, make_sync_task

IMAGE = 28
TINY_TEXT_TOWER = {"vocab_size": 99, "hidden_size": 32, "intermediate_size": 37, "num_hidden_layers": 1,
                   "num_attention_heads": 4, "projection_dim": 16}


def save_tiny_llm(root):
    """The tiny Llama causal LM (512 rows) both families start from, saved with its tokenizer in `root/llm`."""
    text_config = {k: v for k, v in tiny_text_config(vocab_size=512).items() if k != "model_type"}
    llm = LlamaForCausalLM(LlamaConfig(**text_config))
    llm.save_pretrained(root / "llm")
    AutoTokenizer.from_pretrained(ASSETS / "llama_tokenizer").save_pretrained(root / "llm")
    return llm


@pytest.fixture(scope="module")
def favor_components(tmp_path_factory):
    """Four tiny pretrained parts saved the way their libraries save them; returns their folders and models."""
    root = tmp_path_factory.mktemp("components")
    torch.manual_seed(0)
    llm = save_tiny_llm(root)

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
    qformer_tokenizer = BertTokenizer(str(ASSETS / "bert_tokenizer" / "vocab.txt"))
    qformer_tokenizer.save_pretrained(root / "instructblip" / "qformer_tokenizer")
    return {"root": root, "llm": llm, "whisper": whisper, "beats": beats, "instructblip": blip}


@pytest.fixture(scope="module")
def av_llm_components(tmp_path_factory):
    root = tmp_path_factory.mktemp("av_llm_components")
    torch.manual_seed(0)
    llm = save_tiny_llm(root)

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


def assemble_favor(components, **settings):
    root = components["root"]
    return FavorForConditionalGeneration.from_pretrained_components(
        llm=root / "llm", speech_encoder=root / "whisper", audio_encoder=root / "beats",
        vision_encoder=root / "instructblip",
        connector_hidden_size=16, connector_num_hidden_layers=2, connector_num_attention_heads=2,
        connector_intermediate_size=48, connector_dropout=0.0, **settings,
    )


def assemble_av_llm(components, **settings):
    root = components["root"]
    return AvLlmForConditionalGeneration.from_pretrained_components(
        llm=root / "llm", vision_encoder=root / "clip", audio_encoder=root / "clap", **settings)


def favor_processor_of(model, components):
    root = components["root"]
    return processor_from_components(
        model, llm=root / "llm", speech_encoder=root / "whisper", vision_encoder=root / "instructblip", video_fps=2.0,
    )


def av_llm_processor_of(model, components):
    root = components["root"]
    return av_llm_processor_from_components(model, llm=root / "llm", vision_encoder=root / "clip",
                                            audio_encoder=root / "clap")


@pytest.fixture(scope="module")
def favor_model(favor_components):
    return assemble_favor(favor_components)


@pytest.fixture(scope="module")
def av_llm_model(av_llm_components):
    return assemble_av_llm(av_llm_components, num_frames=4, num_audio_segments=2, audio_sampling_rate=16000)


@pytest.fixture(scope="module")
def favor_processor(favor_model, favor_components):
    return favor_processor_of(favor_model, favor_components)


@pytest.fixture(scope="module")
def av_llm_processor(av_llm_model, av_llm_components):
    return av_llm_processor_of(av_llm_model, av_llm_components)


@dataclass
class Family:
    """What the shared tests expect of one family's assembled model (`inner` is `model.model`)."""

    name: str
    towers: Callable  # (inner, components) -> [(ours, theirs)]: modules or tensors, bit-identical
    new_token_ids: Callable  # config -> the ids of the added rows
    expected_new_token_ids: list
    vocab_size: int
    fresh_weights: Callable  # inner -> weights initialised normal(0, 0.02)
    std_tolerance: float  # relative bound on their sample std
    frozen: Callable  # inner -> parameters that must not train
    sources: dict  # sub-config -> component folder recorded as its _name_or_path
    conflicting_setting: dict  # a setting that the components already fix
    placeholder_id: str  # the processor's and the config's name for the placeholder id


FAMILIES = [
    Family(
        name="favor",
        towers=lambda inner, c: [
            (inner.speech_encoder, c["whisper"].model.encoder),
            (inner.audio_encoder, c["beats"]),
            (inner.visual_encoder.vision_model, c["instructblip"].vision_model),
            (inner.visual_encoder.qformer, c["instructblip"].qformer),
            (inner.visual_encoder.query_tokens, c["instructblip"].query_tokens),
        ],
        new_token_ids=lambda config: [config.audio_visual_token_id],
        expected_new_token_ids=[512],  # <AV> = the tokenizer's next id
        vocab_size=513,
        fresh_weights=lambda inner: [inner.connector.speech_projection.weight,
                                     inner.connector.position_embedding.weight, inner.connector.query_tokens[1]],
        std_tolerance=0.25,  # 0.015 < std < 0.025
        frozen=lambda inner: [*inner.speech_encoder.parameters(), inner.visual_encoder.query_tokens],
        sources={"speech_config": "whisper", "vision_config": "instructblip"},
        conflicting_setting={"num_query_tokens": 8},
        placeholder_id="audio_visual_token_id",
    ),
    Family(
        name="av_llm",
        towers=lambda inner, c: [
            (inner.vision_encoder.vision_model, c["clip"].vision_model),
            (inner.audio_encoder.audio_model, c["clap"].audio_model),
        ],
        new_token_ids=lambda config: [config.media_token_id, config.visual_modality_token_id,
                                      config.audio_modality_token_id, config.audio_visual_modality_token_id],
        expected_new_token_ids=[512, 513, 514, 515],  # <av_media>, <VIS>, <AUD>, <AUD_VIS>
        vocab_size=516,
        fresh_weights=lambda inner: [inner.connector.audio_projection.weight],
        # sample std of a normal(0, 0.02) init over thousands of weights: ~1% sampling error, 10% bound
        std_tolerance=0.1,
        frozen=lambda inner: [*inner.vision_encoder.parameters(), *inner.audio_encoder.parameters()],
        sources={"vision_config": "clip"},
        conflicting_setting={"media_token_id": 3},
        placeholder_id="media_token_id",
    ),
]


@pytest.fixture(params=FAMILIES, ids=lambda family: family.name)
def family(request):
    return request.param


@pytest.fixture
def components(family, request):
    return request.getfixturevalue(f"{family.name}_components")


@pytest.fixture
def model(family, request):
    return request.getfixturevalue(f"{family.name}_model")


def assert_same_weights(ours, theirs):
    if isinstance(theirs, torch.Tensor):
        assert torch.equal(ours, theirs)
        return
    ours, theirs = ours.state_dict(), theirs.state_dict()
    assert ours.keys() == theirs.keys()
    for name, tensor in theirs.items():
        assert torch.equal(ours[name], tensor), name


def test_assembled_model_holds_the_components_weights(family, components, model):
    inner = model.model
    for ours, theirs in family.towers(inner, components):
        assert_same_weights(ours, theirs)
    # the LLM: every original row and layer, plus the new rows at the tokenizer's next ids (512, ...)
    llm = components["llm"]
    assert family.new_token_ids(model.config) == family.expected_new_token_ids
    assert model.config.text_config.vocab_size == family.vocab_size
    embeddings = inner.language_model.embed_tokens.weight
    assert embeddings.shape == (family.vocab_size, 64) and torch.equal(embeddings[:512], llm.model.embed_tokens.weight)
    assert torch.equal(model.lm_head.weight[:512], llm.lm_head.weight)
    for name, tensor in llm.model.layers.state_dict().items():
        assert torch.equal(inner.language_model.layers.state_dict()[name], tensor), name
    # the sources are recorded for the model card
    for sub_config, folder in family.sources.items():
        assert getattr(model.config, sub_config)._name_or_path == str(components["root"] / folder)


def test_new_parts_are_initialised_and_only_encoders_frozen(family, model):
    # the connector is initialised by the model's rules (normal(0, 0.02) weights, no NaN), encoders frozen
    inner = model.model
    connector = inner.connector
    assert all(torch.isfinite(p).all() for p in connector.parameters())
    for weight in family.fresh_weights(inner):
        assert float(weight.detach().std()) == pytest.approx(0.02, rel=family.std_tolerance)
    assert not any(p.requires_grad for p in family.frozen(inner))
    assert all(p.requires_grad for p in connector.parameters())


def test_component_settings_conflicts_are_refused(family, components):
    assemble = {"favor": assemble_favor, "av_llm": assemble_av_llm}[family.name]
    with pytest.raises(ValueError, match="come from the components"):
        assemble(components, **family.conflicting_setting)


def test_assembled_processor_matches_the_model(family, model, request):
    processor = request.getfixturevalue(f"{family.name}_processor")
    assert getattr(processor, family.placeholder_id) == getattr(model.config, family.placeholder_id)


def test_favor_leaves_out_the_unused_parts(favor_model):
    # nothing of the InstructBLIP LLM or the Whisper decoder came along
    names = set(favor_model.state_dict())
    assert not any("decoder" in n and "speech_encoder" in n for n in names)
    assert not any(n.startswith("model.visual_encoder.qformer.") and "language" in n for n in names)


def test_shard_selection_reads_only_the_requested_prefixes(favor_components):
    tensors = load_weights_with_prefixes(favor_components["root"] / "instructblip", ["qformer."])
    assert tensors and all(name.startswith("qformer.") for name in tensors)
    expected = {f"qformer.{k}": v for k, v in favor_components["instructblip"].qformer.state_dict().items()}
    assert tensors.keys() == expected.keys()
    assert all(torch.equal(tensors[k], expected[k]) for k in expected)


def test_assembled_favor_trains_on_the_synthetic_task(favor_components, favor_processor, tmp_path):
    torch.manual_seed(0)
    model = assemble_favor(favor_components)  # its own copy: training changes it
    model.config.qformer_config.hidden_dropout_prob = 0.0
    make_sync_task(tmp_path / "task", 2, seconds=2, fps=4, size=(IMAGE, IMAGE))
    dataset = load_av_dataset(tmp_path / "task" / "data.jsonl")
    batch = FavorDataCollator(favor_processor)([dataset[i] for i in range(len(dataset))])

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


def test_assembled_av_llm_towers_compute_what_clip_and_clap_compute(av_llm_components, av_llm_model,
                                                                   av_llm_processor, tmp_path):
    model, inner = av_llm_model, av_llm_model.model
    clip_path = make_av_clip(tmp_path / "clip.mp4", seconds=2.0, fps=4, size=(32, 32)).path
    batch = av_llm_processor(text=["<AUD_VIS> What happens?"], videos=[str(clip_path)], answers=["a beep"])
    assert int((batch["input_ids"] == 512).sum()) == 4 + 4 + 2  # T + P + K
    # the towers compute what the CLIP / CLAP models compute on the same inputs
    model.eval()
    with torch.no_grad():
        media = inner.get_media_embeds(pixel_values_videos=batch["pixel_values_videos"],
                                       audio_input_features=batch["audio_input_features"])
        clip, clap = av_llm_components["clip"], av_llm_components["clap"]
        clip_cls = clip.vision_model(pixel_values=batch["pixel_values_videos"][0]).last_hidden_state[:, 0]
        clap_out = clap.audio_model(input_features=batch["audio_input_features"][0]).last_hidden_state
    # same towers and inputs in the same process, only the batch layout differs: fp32 rounding (measured 0)
    assert torch.allclose(media.temporal_tokens[0], clip_cls, atol=1e-5)
    assert torch.allclose(media.audio_tokens[0], clap_out.flatten(1), atol=1e-5)
    loss = model(**batch).loss
    assert torch.isfinite(loss)
