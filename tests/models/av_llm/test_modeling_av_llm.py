"""AvLlmForConditionalGeneration (Audio-Visual LLM, Shu et al. 2023) on tiny random weights: the media-token layout
against direct CLIP / CLAP calls, per-sample modality routing, gradients of absent modalities, generation, padding,
save/load through the Auto classes, a training signal and the error messages.

Tiny config (`tiny_av_llm_config`): CLIP 28 px / patch 14 -> P = (28 // 14) ** 2 = 4 spatial tokens of width 32;
tiny HTSAT -> one audio token per segment of 32 * 1 * 16 = 512 values; LLM width 64, vocabulary 516 with
512 = <av_media> (placeholder), 513 = <VIS>, 514 = <AUD>, 515 = <AUD_VIS>; T = 4 frames, K = 2 segments.
"""

from __future__ import annotations

import math
from contextlib import contextmanager

import pytest
import torch
from transformers import AutoConfig, AutoModel, AutoModelForMultimodalLM, AutoProcessor

from transformers_av import AvLlmConfig, AvLlmForConditionalGeneration, AvLlmModel
from transformers_av.testing import make_av_clip, make_tone
from transformers_av.presets.tiny import tiny_av_llm_config
from transformers_av.presets.tiny import tiny_av_llm_processor

MEDIA, VIS, AUD, AUD_VIS = 512, 513, 514, 515
T, P, K = 4, 4, 2  # frames, spatial tokens (28 // 14) ** 2, audio segments
IMAGE = 28
MEL_TIME, MEL_BINS = 201, 16  # what the tiny ClapFeatureExtractor gives for a 2 s window: 2 * 100 + 1 frames
BEFORE, AFTER = [1, 10, 11], [12, 13, 14]  # BOS + prompt words around the placeholder
# Same model, same process: merged embeddings vs a hand-built reference, a left-padded batch vs each sample alone,
# inputs_embeds vs ids. Only batch shapes (fp32 matmul blocking, masked attention) change the summation order:
# 1e-5 on O(1) values (measured <= 6e-7 under every setting of tools/check_portability.sh).
ATOL = 1e-5


def make_model(seed=0, **overrides):
    torch.manual_seed(seed)
    return AvLlmForConditionalGeneration(tiny_av_llm_config(**overrides)).eval()


@pytest.fixture(scope="module")
def model():
    return make_model()


def expected_count(token, frames, segments):
    """The placeholder length by hand: <AUD_VIS> / no token T+P+K, <VIS> T+P, <AUD> K."""
    visual = token in (VIS, AUD_VIS, None)
    audio = token in (AUD, AUD_VIS, None)
    return (frames + P if visual else 0) + (segments if audio else 0)


def hand_batch(rows, seed=0):
    """A left-padded batch from `(modality token or None, frame mask, segment mask)` rows: random CLIP pixels for all T
    frames and random CLAP features for all K segments of every row (the masks say which are real)."""
    g = torch.Generator().manual_seed(seed)
    ids = []
    for token, frame_mask, segment_mask in rows:
        count = expected_count(token, sum(frame_mask), sum(segment_mask))
        ids.append(BEFORE + ([token] if token is not None else []) + [MEDIA] * count + AFTER)
    length = max(len(x) for x in ids)
    input_ids = torch.zeros(len(rows), length, dtype=torch.long)
    attention_mask = torch.zeros(len(rows), length, dtype=torch.long)
    for i, x in enumerate(ids):
        input_ids[i, length - len(x):] = torch.tensor(x)
        attention_mask[i, length - len(x):] = 1
    return {
        "input_ids": input_ids,
        "attention_mask": attention_mask,
        "pixel_values_videos": torch.randn(len(rows), T, 3, IMAGE, IMAGE, generator=g),
        "video_frame_mask": torch.tensor([r[1] for r in rows], dtype=torch.bool),
        "audio_input_features": torch.randn(len(rows), K, 1, MEL_TIME, MEL_BINS, generator=g),
        "audio_segment_mask": torch.tensor([r[2] for r in rows], dtype=torch.bool),
    }


def media_of(batch):
    return {k: v for k, v in batch.items() if k not in ("input_ids", "attention_mask")}


@torch.no_grad()
def reference_tokens(model, pixels, frame_mask, features, segment_mask, token):
    """One sample's media tokens computed independently: the transformers towers called directly (CLIPVisionModel:
    [CLS] + P patch tokens of each valid frame; ClapAudioModel: last_hidden_state (32, 1, 16) of each valid segment,
    flattened to 512), then the three projections, in the order [temporal | spatial | audio]."""
    core = model.model
    clip, clap, connector = core.vision_encoder.vision_model, core.audio_encoder.audio_model, core.connector
    assert type(clip).__name__ == "CLIPVisionModel" and type(clap).__name__ == "ClapAudioModel"
    blocks = []
    if token in (VIS, AUD_VIS, None):
        hidden = clip(pixel_values=pixels[frame_mask]).last_hidden_state  # (T_valid, 1 + P, 32)
        blocks.append(connector.temporal_projection(hidden[:, 0]))  # (T_valid, 64), frames in time order
        blocks.append(connector.spatial_projection(hidden[:, 1:].mean(dim=0)))  # (P, 64): mean over valid frames
    if token in (AUD, AUD_VIS, None):
        hidden = clap(input_features=features[segment_mask]).last_hidden_state  # (K_valid, 32, 1, 16)
        assert hidden.shape[1:].numel() == 512
        blocks.append(connector.audio_projection(hidden.flatten(1)))  # (K_valid, 64)
    return torch.cat(blocks)


# (token, frame mask, segment mask): 1, 3 (one gap) and 4 valid frames, 1 and 2 valid segments
LAYOUT_ROWS = [
    (AUD_VIS, [1, 0, 0, 0], [1, 1]),  # 1 + 4 + 2 = 7 tokens
    (AUD_VIS, [1, 0, 1, 1], [1, 0]),  # 3 + 4 + 1 = 8: frames 0, 2, 3 in that order
    (AUD_VIS, [1, 1, 1, 1], [1, 1]),  # 4 + 4 + 2 = 10
    (VIS, [1, 1, 1, 0], [1, 1]),  # 3 + 4 = 7: the audio given is not used
    (AUD, [1, 1, 1, 1], [1, 1]),  # 2: the frames given are not used
    (AUD, [1, 1, 0, 0], [1, 0]),  # 1
    (None, [1, 1, 1, 0], [1, 1]),  # 3 + 4 + 2 = 9: no modality token, every medium given
]
LAYOUT_COUNTS = [7, 8, 10, 7, 2, 1, 9]


def test_expected_counts_by_hand():
    assert [expected_count(t, sum(f), sum(s)) for t, f, s in LAYOUT_ROWS] == LAYOUT_COUNTS


@torch.no_grad()
@pytest.mark.parametrize("row", range(len(LAYOUT_ROWS)))
def test_media_token_count_and_order_alone(model, row):
    token, frame_mask, segment_mask = LAYOUT_ROWS[row]
    batch = hand_batch([LAYOUT_ROWS[row]], seed=row)
    embeds, output = model.model.embed_prompt(batch["input_ids"], **media_of(batch))
    assert output.token_counts.tolist() == [LAYOUT_COUNTS[row]]
    placeholder = batch["input_ids"][0] == MEDIA
    assert int(placeholder.sum()) == LAYOUT_COUNTS[row]
    expected = reference_tokens(
        model, batch["pixel_values_videos"][0], batch["video_frame_mask"][0], batch["audio_input_features"][0],
        batch["audio_segment_mask"][0], token,
    )
    assert expected.shape == (LAYOUT_COUNTS[row], 64)
    torch.testing.assert_close(embeds[0, placeholder], expected, atol=ATOL, rtol=0)
    # the text tokens keep their own embeddings
    text = model.get_input_embeddings()(batch["input_ids"][0, ~placeholder])
    assert torch.equal(embeds[0, ~placeholder], text)


@torch.no_grad()
def test_media_token_order_in_one_mixed_batch(model):
    batch = hand_batch(LAYOUT_ROWS, seed=1)
    embeds = model.get_inputs_embeds(batch["input_ids"], **media_of(batch))
    assert (batch["input_ids"] == MEDIA).sum(1).tolist() == LAYOUT_COUNTS
    for i, (token, _, _) in enumerate(LAYOUT_ROWS):
        expected = reference_tokens(
            model, batch["pixel_values_videos"][i], batch["video_frame_mask"][i], batch["audio_input_features"][i],
            batch["audio_segment_mask"][i], token,
        )
        torch.testing.assert_close(embeds[i, batch["input_ids"][i] == MEDIA], expected, atol=ATOL, rtol=0)


@contextmanager
def counting_calls(model):
    """Calls of the two encoders and three projections, with the frames / segments each encoder tower received."""
    core = model.model
    calls = {"vision": 0, "audio": 0, "temporal": 0, "spatial": 0, "audio_projection": 0, "frames": 0, "segments": 0}
    handles = []

    def count(name):
        def hook(*_):
            calls[name] += 1
        return hook

    for name, module in (
        ("vision", core.vision_encoder), ("audio", core.audio_encoder),
        ("temporal", core.connector.temporal_projection), ("spatial", core.connector.spatial_projection),
        ("audio_projection", core.connector.audio_projection),
    ):
        handles.append(module.register_forward_hook(count(name)))

    def frames_seen(_module, args, _output):
        calls["frames"] += args[0].shape[0]

    def segments_seen(_module, _args, kwargs):
        calls["segments"] += kwargs["input_features"].shape[0]

    handles.append(core.vision_encoder.vision_model.embeddings.register_forward_hook(frames_seen))
    handles.append(core.audio_encoder.audio_model.register_forward_pre_hook(segments_seen, with_kwargs=True))
    try:
        yield calls
    finally:
        for handle in handles:
            handle.remove()


FULL = ([1, 1, 1, 1], [1, 1])  # every frame and segment real


@torch.no_grad()
@pytest.mark.parametrize(
    "tokens, expected",
    [
        # vision, audio, temporal, spatial, audio projection calls; frames through CLIP; segments through CLAP
        ([VIS, VIS], (1, 0, 1, 1, 0, 2 * T, 0)),
        ([AUD, AUD], (0, 1, 0, 0, 1, 0, 2 * K)),
        ([VIS, AUD, AUD_VIS], (1, 1, 1, 1, 1, 2 * T, 2 * K)),  # frames of rows 0 and 2, segments of rows 1 and 2
        ([None], (1, 1, 1, 1, 1, T, K)),  # no modality token: every medium given
    ],
)
def test_each_modality_token_runs_exactly_the_encoders_it_names(model, tokens, expected):
    batch = hand_batch([(token, *FULL) for token in tokens])
    with counting_calls(model) as calls:
        output = model(**batch)
    names = ("vision", "audio", "temporal", "spatial", "audio_projection", "frames", "segments")
    assert tuple(calls[name] for name in names) == expected
    assert torch.isfinite(output.logits).all()


@torch.no_grad()
def test_unused_media_of_a_sample_do_not_influence_the_batch(model):
    tokens = [VIS, AUD, AUD_VIS]
    batch = hand_batch([(token, *FULL) for token in tokens])
    _, media = model.model.embed_prompt(batch["input_ids"], **media_of(batch))
    assert media.token_counts.tolist() == [T + P, K, T + P + K]  # 8, 2, 10: the <VIS> row has no audio tokens
    assert media.uses_visual.tolist() == [True, False, True] and media.uses_audio.tolist() == [False, True, True]
    reference = model(**batch).logits

    changed = dict(batch)
    changed["audio_input_features"] = batch["audio_input_features"].clone()
    changed["audio_input_features"][0] = torch.randn(K, 1, MEL_TIME, MEL_BINS)  # the <VIS> row's audio
    changed["pixel_values_videos"] = batch["pixel_values_videos"].clone()
    changed["pixel_values_videos"][1] = torch.randn(T, 3, IMAGE, IMAGE)  # the <AUD> row's frames
    # every module sees the same inputs as before: bit-identical logits, the <VIS> and <AUD> rows included
    assert torch.equal(model(**changed).logits, reference)

    # whereas the <AUD_VIS> row does read its audio
    used = dict(batch, audio_input_features=batch["audio_input_features"].clone())
    used["audio_input_features"][2] = torch.randn(K, 1, MEL_TIME, MEL_BINS)
    logits = model(**used).logits
    assert torch.equal(logits[:2], reference[:2])
    assert not torch.allclose(logits[2], reference[2], atol=1e-6)  # other audio, other logits (measured 0.79 apart)


def test_absent_modality_gets_no_gradient_or_an_exact_zero_one():
    visual_batch = hand_batch([(VIS, *FULL), (VIS, [1, 1, 0, 0], [1, 1])])
    labels = visual_batch["input_ids"].clone()
    labels[:, : -len(AFTER)] = -100  # the three words after the media are the answer

    def step(model):
        model.train()
        model.zero_grad(set_to_none=True)
        torch.manual_seed(0)
        loss = model(**visual_batch, labels=labels).loss
        loss.backward()
        return loss

    default = make_model()
    default_loss = step(default)
    connector = default.model.connector
    assert connector.audio_projection.weight.grad is None
    assert all(p.grad is None for p in default.model.audio_encoder.parameters())
    assert connector.temporal_projection.weight.grad is not None
    assert connector.spatial_projection.weight.grad is not None

    always = make_model(run_absent_encoders="always")
    always.load_state_dict(default.state_dict())
    audio_buffers = {k: v.clone() for k, v in always.model.audio_encoder.state_dict().items()}
    always_loss = step(always)
    assert torch.equal(always_loss, default_loss)  # the zero anchor changes no value
    grad = always.model.connector.audio_projection.weight.grad
    assert grad is not None and grad.shape == (64, 512) and torch.count_nonzero(grad) == 0
    tower_grads = [p.grad for p in always.model.audio_encoder.parameters()]
    assert all(g is not None and torch.count_nonzero(g) == 0 for g in tower_grads)
    # the dummy pass leaves the (unfrozen, train-mode) CLAP batch-norm statistics alone
    for key, value in always.model.audio_encoder.state_dict().items():
        assert torch.equal(value, audio_buffers[key]), key
    assert always.model.audio_encoder.training


@pytest.fixture(scope="module")
def av_clip(tmp_path_factory):
    """1 s, 8 fps, 32x32 video with a beep at 0.5 s (16 kHz sound track)."""
    return make_av_clip(tmp_path_factory.mktemp("av_llm") / "clip.mp4", seconds=1.0, fps=8, size=(32, 32))


PROMPTS = ["<AUD_VIS> What happens?", "<VIS> What colour is the square?", "<AUD> What do you hear?"]


@pytest.fixture(scope="module")
def processor():
    return tiny_av_llm_processor()


def mixed_batch(processor, clip, indices=(0, 1, 2)):
    videos = [clip.path, clip.path, None]
    audio = [None, None, make_tone(440.0, 1.0)]
    return processor(
        text=[PROMPTS[i] for i in indices], videos=[videos[i] for i in indices], audio=[audio[i] for i in indices],
        sampling_rate=16000,
    )


@torch.no_grad()
def test_generate_with_and_without_cache_on_a_processor_batch(model, processor, av_clip):
    batch = mixed_batch(processor, av_clip)
    # placeholders by hand: 4 + 4 + 2 = 10, 4 + 4 = 8, 2
    assert (batch["input_ids"] == MEDIA).sum(1).tolist() == [10, 8, 2]
    assert batch["attention_mask"][:, 0].tolist() == [1, 0, 0]  # left padding: the longest row starts at 0
    kwargs = dict(max_new_tokens=6, do_sample=False, pad_token_id=0)
    cached = model.generate(**batch, use_cache=True, **kwargs)
    uncached = model.generate(**batch, use_cache=False, **kwargs)
    assert cached.shape == (3, batch["input_ids"].shape[1] + 6)
    assert torch.equal(cached, uncached)
    assert (cached[:, -6:] != MEDIA).all()  # the placeholder is never generated


@torch.no_grad()
def test_left_padded_batch_equals_each_sample_alone(model, processor, av_clip):
    batch = mixed_batch(processor, av_clip)
    logits = model(**batch).logits
    length = batch["input_ids"].shape[1]
    for i in range(3):
        alone = mixed_batch(processor, av_clip, indices=(i,))
        assert alone["attention_mask"].all()
        n = alone["input_ids"].shape[1]
        assert torch.equal(batch["input_ids"][i, length - n:], alone["input_ids"][0])
        assert int(batch["attention_mask"][i].sum()) == n
        torch.testing.assert_close(logits[i, length - n:], model(**alone).logits[0], atol=ATOL, rtol=0)


def test_save_load_bit_exact_through_the_auto_classes(tmp_path, model, processor, av_clip):
    model.save_pretrained(tmp_path)
    processor.save_pretrained(tmp_path)
    config = AutoConfig.from_pretrained(tmp_path)
    assert isinstance(config, AvLlmConfig) and config.model_type == "av_llm"
    assert (config.num_frames, config.num_audio_segments, config.num_patches, config.audio_token_size) == (4, 2, 4, 512)
    assert config.modality_token_ids == {"visual": 513, "audio": 514, "audio_visual": 515}

    batch = mixed_batch(processor, av_clip)
    with torch.no_grad():
        reference = model(**batch).logits
    for loader in (AvLlmForConditionalGeneration, AutoModelForMultimodalLM):
        loaded = loader.from_pretrained(tmp_path).eval()
        assert isinstance(loaded, AvLlmForConditionalGeneration)
        expected, found = model.state_dict(), loaded.state_dict()
        assert expected.keys() == found.keys()
        for key in expected:
            assert torch.equal(expected[key], found[key]), key
        with torch.no_grad():
            assert torch.equal(loaded(**batch).logits, reference)
    base = AutoModel.from_pretrained(tmp_path)
    assert isinstance(base, AvLlmModel)
    expected = model.model.state_dict()
    assert base.state_dict().keys() == expected.keys()
    for key, value in base.state_dict().items():
        assert torch.equal(value, expected[key]), key

    reloaded = AutoProcessor.from_pretrained(tmp_path)
    assert type(reloaded) is type(processor)
    assert (reloaded.num_frames, reloaded.num_audio_segments, reloaded.num_patches) == (4, 2, 4)
    again = mixed_batch(reloaded, av_clip)
    assert again.keys() == batch.keys()
    for key in batch:
        assert torch.equal(again[key], batch[key]), key


def test_training_signal_with_frozen_encoders(processor, av_clip):
    model = make_model(seed=1)
    model.freeze_encoders()
    model.train()
    encoders = model.model.encoder_modules()
    assert model.training and model.model.connector.training
    for name, module in encoders.items():
        assert not any(m.training for m in module.modules()), name  # frozen encoders stay in eval mode
    frozen = {name: {k: v.clone() for k, v in m.state_dict().items()} for name, m in encoders.items()}

    batch = processor(
        text=PROMPTS, videos=[av_clip.path, av_clip.path, None], audio=[None, None, make_tone(440.0, 1.0)],
        sampling_rate=16000, answers=["A beep.", "Red.", "A tone."],
    )
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=1e-2)
    losses = []
    for _ in range(15):
        optimizer.zero_grad(set_to_none=True)
        loss = model(**batch).loss
        loss.backward()
        if not losses:
            for name, module in encoders.items():
                assert all(p.grad is None for p in module.parameters()), name
            for projection in ("temporal_projection", "spatial_projection", "audio_projection"):
                assert getattr(model.model.connector, projection).weight.grad is not None, projection
        optimizer.step()
        losses.append(loss.item())
    assert abs(losses[0] - math.log(516)) < 0.5, losses  # random init: about uniform over 516 ids, ln 516 = 6.25
    assert losses[-1] < 0.5 * losses[0], losses
    for name, module in encoders.items():
        assert not any(m.training for m in module.modules()), name
        for key, value in module.state_dict().items():
            assert torch.equal(value, frozen[name][key]), (name, key)


def test_placeholder_count_mismatch_names_the_processor(model):
    batch = hand_batch([(AUD_VIS, *FULL)])
    first = int((batch["input_ids"][0] == MEDIA).nonzero()[0])
    batch["input_ids"][0, first] = 10  # 9 placeholders for 10 media tokens
    with pytest.raises(ValueError, match=r"\[9\].*\[10\].*AvLlmProcessor"):
        model(**batch)


def test_placeholders_without_the_media_they_name_are_an_error(model):
    # an <AUD> prompt with 2 placeholders but only frames given: no media token is produced at all
    batch = hand_batch([(AUD, *FULL)])
    del batch["audio_input_features"], batch["audio_segment_mask"]
    with pytest.raises(ValueError, match=r"Samples \[0\].*AvLlmProcessor"):
        model(**batch)


@torch.no_grad()
def test_without_media_placeholder_and_modality_tokens_are_text(model):
    # as in transformers' VLMs: a call without media is a text-only call, whatever tokens the prompt holds
    batch = hand_batch([(AUD_VIS, *FULL)])
    ids = batch["input_ids"]
    assert bool((ids == MEDIA).any()) and bool((ids == AUD_VIS).any())
    body = model.model.language_model(inputs_embeds=model.get_input_embeddings()(ids)).last_hidden_state
    expected = model.lm_head(body)
    expected[..., MEDIA] = torch.finfo(expected.dtype).min  # the placeholder is never predicted
    torch.testing.assert_close(model(input_ids=ids).logits, expected, atol=0, rtol=0)


@torch.no_grad()
def test_inputs_embeds_with_media_match_input_ids(model):
    # the placeholder and modality tokens are found by value in given embeddings (transformers' VLM convention)
    batch = hand_batch([(AUD_VIS, *FULL), (VIS, [1, 1, 0, 0], [1, 0])])
    media = media_of(batch)
    embeds = model.get_input_embeddings()(batch["input_ids"])
    from_embeds = model(inputs_embeds=embeds, attention_mask=batch["attention_mask"], **media)
    from_ids = model(**batch)
    torch.testing.assert_close(from_embeds.logits, from_ids.logits, atol=0, rtol=0)
    torch.testing.assert_close(from_embeds.media_embeds, from_ids.media_embeds, atol=0, rtol=0)
    with pytest.raises(ValueError, match="exactly one"):
        model(input_ids=batch["input_ids"], inputs_embeds=embeds)
    # the merged embeddings alone give the same logits as the ids with their media
    merged = model.get_inputs_embeds(batch["input_ids"], **media)
    torch.testing.assert_close(
        model(inputs_embeds=merged, attention_mask=batch["attention_mask"]).logits, from_ids.logits, atol=ATOL, rtol=0
    )


@torch.no_grad()
def test_return_dict_false_gives_the_output_fields_as_a_tuple(model):
    batch = hand_batch([(None, [1, 1, 1, 0], [1, 1])])
    labels = batch["input_ids"].masked_fill(batch["input_ids"] == MEDIA, -100)
    out = model(**batch, labels=labels)
    as_tuple = model(**batch, labels=labels, return_dict=False)
    # loss, logits, cache, the CLIP and CLAP towers' outputs (as tuples), media_embeds
    assert isinstance(as_tuple, tuple) and len(as_tuple) == 6
    assert torch.equal(as_tuple[0], out.loss) and torch.equal(as_tuple[1], out.logits)
    assert all(torch.equal(a, b) for a, b in zip(as_tuple[3], out.image_outputs.to_tuple()))
    assert all(torch.equal(a, b) for a, b in zip(as_tuple[4], out.audio_outputs.to_tuple()))
    assert torch.equal(as_tuple[5], out.media_embeds)
    inner = model.model(**batch, return_dict=False)
    assert isinstance(inner, tuple) and torch.equal(inner[0], model.model(**batch).last_hidden_state)


@torch.no_grad()
def test_clip_tower_outputs_are_returned_and_agree_with_the_short_path(model):
    # asked for per-layer outputs, the whole CLIP tower runs; the hidden state the tokens are read from is unchanged
    model.set_attn_implementation("eager")
    batch = hand_batch([(AUD_VIS, *FULL), (VIS, [1, 1, 0, 0], [1, 0])])
    out = model(**batch, output_hidden_states=True, output_attentions=True)
    plain = model(**batch)
    torch.testing.assert_close(out.logits, plain.logits, atol=ATOL, rtol=0)
    tower = out.image_outputs
    layers = model.config.vision_config.num_hidden_layers
    assert len(tower.hidden_states) == layers + 1 and len(tower.attentions) == layers
    assert tower.last_hidden_state.shape[0] == 6  # 4 + 2 real frames
    torch.testing.assert_close(tower.hidden_states[model.config.vision_feature_layer], tower.last_hidden_state, atol=ATOL, rtol=0)
    torch.testing.assert_close(plain.image_outputs.last_hidden_state, tower.last_hidden_state, atol=ATOL, rtol=0)
    assert plain.image_outputs.hidden_states is None
    assert out.image_outputs.pooler_output.shape[:2] == (2, T)
    assert out.audio_outputs.pooler_output.shape[:2] == (2, K)
