"""FavorForConditionalGeneration on tiny random weights: save/load, generate, batching, modalities, gradients."""

import pytest
import torch
from transformers import AutoConfig, AutoModel, AutoModelForMultimodalLM

from transformers_av import FavorConfig, FavorForConditionalGeneration, FavorModel, window_plan
from transformers_av.presets.tiny import tiny_favor_config

IMAGE = 28  # tiny ViT input: 2 x 2 patches
MEL_CHUNK = 3000


def make_model(variant="video_salmonn", seed=0, **overrides):
    torch.manual_seed(seed)
    return FavorForConditionalGeneration(tiny_favor_config(variant, image_size=IMAGE, **overrides)).eval()


def sample_media(num_frames, audio_seconds, seed, salmonn=True):
    """Media of one sample: frames (T, 3, H, W), mel (80, 3000) with mask, BEATs fbank (F, 128)."""
    g = torch.Generator().manual_seed(seed)
    media = {"frames": torch.randn(num_frames, 3, IMAGE, IMAGE, generator=g) if num_frames else None}
    if audio_seconds:
        mel_frames = int(audio_seconds * 100)
        media["mel"] = torch.randn(80, MEL_CHUNK, generator=g)
        media["mel_mask"] = torch.arange(MEL_CHUNK) < mel_frames
        media["fbank"] = torch.randn(int(audio_seconds * 100) - 2, 128, generator=g) if salmonn else None
    return media


def collate(model, samples, prompts, pad_id=0):
    """Left-padded batch with the placeholder expanded by the shared window plan."""
    config = model.config
    token = config.audio_visual_token_id
    ids, plans = [], []
    for media, (before, after) in zip(samples, prompts):
        frames = 0 if media["frames"] is None else media["frames"].shape[0]
        audio_frames = 0
        if "mel" in media:
            audio_frames = -(-int(media["mel_mask"].sum()) // 50)
        plan = window_plan(max(frames, audio_frames), config.resolutions)
        plans.append(plan)
        ids.append(torch.tensor(before + [token] * plan.num_tokens + after))
    length = max(len(x) for x in ids)
    input_ids = torch.full((len(ids), length), pad_id)
    attention_mask = torch.zeros(len(ids), length, dtype=torch.long)
    for i, x in enumerate(ids):
        input_ids[i, length - len(x):] = x
        attention_mask[i, length - len(x):] = 1
    batch = {"input_ids": input_ids, "attention_mask": attention_mask}
    max_frames = max((m["frames"].shape[0] for m in samples if m["frames"] is not None), default=0)
    if max_frames:
        pixels = torch.zeros(len(samples), max_frames, 3, IMAGE, IMAGE)
        frame_mask = torch.zeros(len(samples), max_frames, dtype=torch.bool)
        for i, m in enumerate(samples):
            if m["frames"] is not None:
                pixels[i, : m["frames"].shape[0]] = m["frames"]
                frame_mask[i, : m["frames"].shape[0]] = True
        batch.update(pixel_values_videos=pixels, video_frame_mask=frame_mask)
    if any("mel" in m for m in samples):
        batch["input_features"] = torch.stack([m.get("mel", torch.zeros(80, MEL_CHUNK)) for m in samples])
        batch["input_features_mask"] = torch.stack([m.get("mel_mask", torch.zeros(MEL_CHUNK, dtype=torch.bool)) for m in samples])
        if config.audio_config is not None:
            longest = max(m["fbank"].shape[0] for m in samples if "fbank" in m)
            fbank = torch.zeros(len(samples), longest, 128)
            fmask = torch.zeros(len(samples), longest, dtype=torch.bool)
            for i, m in enumerate(samples):
                if "fbank" in m:
                    fbank[i, : m["fbank"].shape[0]] = m["fbank"]
                    fmask[i, : m["fbank"].shape[0]] = True
            batch.update(audio_input_features=fbank, audio_input_features_mask=fmask)
    return batch, plans


PROMPT = ([1, 10, 11], [12, 13, 14, 15])


def test_window_plan_by_hand():
    plan = window_plan(64, [[1, 3], [10, 30]])
    assert (plan.num_frames, plan.padded_frames, plan.windows, plan.num_tokens) == (64, 70, (70, 7), 210)
    assert window_plan(60, [[1, 3], [10, 30]]).num_tokens == 180
    assert window_plan(1, [[10, 32]]).num_tokens == 32
    assert window_plan(0, [[10, 32]]).padded_frames == 10
    with pytest.raises(ValueError, match="num_frames"):
        window_plan(-1, [[10, 32]])


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"resolutions": [[1, 3], [10, 20]]}, "same number of tokens"),
        ({"resolutions": [[3, 3], [10, 10]]}, "multiple of every window length"),
        ({"audio_frames_per_frame": 40}, "cannot exceed num_query_tokens"),
        ({"connector_num_attention_heads": 5}, "divisible"),
        ({"resolutions": [[200, 32]]}, "position table"),
        ({"audio_visual_token_id": 10_000}, "vocabulary"),
    ],
)
def test_invalid_configs_raise(overrides, message):
    with pytest.raises(ValueError, match=message):
        tiny_favor_config("video_salmonn", **overrides)


def test_save_load_is_bit_exact_and_auto_classes(tmp_path):
    model = make_model()
    model.save_pretrained(tmp_path)
    assert isinstance(AutoConfig.from_pretrained(tmp_path), FavorConfig)
    for loader in (AutoModelForMultimodalLM, FavorForConditionalGeneration):
        loaded = loader.from_pretrained(tmp_path)
        assert isinstance(loaded, FavorForConditionalGeneration)
        reference, reloaded = model.state_dict(), loaded.state_dict()
        assert reference.keys() == reloaded.keys()
        for key in reference:
            assert torch.equal(reference[key], reloaded[key]), key
    base = AutoModel.from_pretrained(tmp_path)
    assert isinstance(base, FavorModel)
    for key, value in base.state_dict().items():
        assert torch.equal(value, model.model.state_dict()[key]), key


def test_bf16_and_device_map_loading(tmp_path):
    model = make_model()
    model.save_pretrained(tmp_path)
    samples = [sample_media(4, 2.0, 0)]
    batch, _ = collate(model, samples, [PROMPT])
    with torch.no_grad():
        reference = model(**batch).logits
        bf16 = FavorForConditionalGeneration.from_pretrained(tmp_path, dtype=torch.bfloat16).eval()
        assert bf16.dtype == torch.bfloat16
        logits = bf16(**{k: v.to(torch.bfloat16) if v.is_floating_point() else v for k, v in batch.items()}).logits
    assert torch.isfinite(logits.float()).all()
    # bf16 has 8 significant bits (unit round-off 2^-8 = 0.4% per op): 10% of the largest logit is loose but model-size
    # independent (measured 0.0066 vs 0.07). The placeholder's column is masked to finfo.min (-3.4e38, -3.39e38 in
    # bf16) and is left out: with it the bound was 3.4e37 and checked nothing.
    real = torch.arange(reference.shape[-1]) != model.config.audio_visual_token_id
    assert (logits.float() - reference)[..., real].abs().max() < 0.1 * reference[..., real].abs().max()
    mapped = FavorForConditionalGeneration.from_pretrained(tmp_path, device_map="auto")
    assert {p.device.type for p in mapped.parameters()} == {"cpu"}
    with torch.no_grad():
        # same weights, same device, same process: only loading differs (measured 0, exact in practice)
        assert torch.allclose(mapped(**batch).logits, reference, atol=1e-5)


@torch.no_grad()
def test_generate_with_and_without_cache_and_beam_and_sampling():
    model = make_model()
    batch, _ = collate(model, [sample_media(6, 3.0, 1)], [PROMPT])
    kwargs = dict(max_new_tokens=6, do_sample=False, pad_token_id=0)
    cached = model.generate(**batch, use_cache=True, **kwargs)
    uncached = model.generate(**batch, use_cache=False, **kwargs)
    assert cached.shape[1] == batch["input_ids"].shape[1] + 6
    assert torch.equal(cached, uncached)
    beams = model.generate(**batch, num_beams=3, num_return_sequences=2, **kwargs)
    assert beams.shape[0] == 2
    torch.manual_seed(0)
    sampled = model.generate(**batch, max_new_tokens=6, do_sample=True, top_k=5, pad_token_id=0)
    assert sampled.shape[1] == batch["input_ids"].shape[1] + 6
    assert (sampled[:, batch["input_ids"].shape[1]:] < model.config.text_config.vocab_size).all()


@torch.no_grad()
def test_left_padded_batch_equals_one_by_one():
    model = make_model()
    samples = [
        sample_media(6, 3.0, 1),     # video + audio, 6 frames, 3 s
        sample_media(25, 1.0, 2),    # long video, short audio -> 30 padded frames
        sample_media(0, 7.5, 3),     # audio only, 15 frames
    ]
    samples[2]["frames"] = None
    prompts = [PROMPT, ([1, 20], [21]), ([1, 30, 31, 32, 33, 34], [35, 36])]
    batch, plans = collate(model, samples, prompts)
    assert [p.num_tokens for p in plans] == [30, 90, 60]
    kwargs = dict(max_new_tokens=5, do_sample=False, pad_token_id=0)
    batched = model.generate(**batch, **kwargs)[:, batch["input_ids"].shape[1]:]
    for i, (sample, prompt) in enumerate(zip(samples, prompts)):
        single, _ = collate(model, [sample], [prompt])
        alone = model.generate(**single, **kwargs)[:, single["input_ids"].shape[1]:]
        assert batched[i].tolist() == alone[0].tolist(), i
        # the audio-visual tokens themselves are identical too
        av_batch = model.get_audio_visual_features(**{k: v for k, v in batch.items() if k not in ("input_ids", "attention_mask")})
        av_alone = model.get_audio_visual_features(**{k: v for k, v in single.items() if k not in ("input_ids", "attention_mask")})
        n = plans[i].num_tokens
        # same process, batched vs alone: fp32 matmul blocking and masked windows only; O(1) embeds, measured 3e-8
        assert torch.allclose(av_batch.embeds[i, :n], av_alone.embeds[0, :n], atol=1e-5)


@torch.no_grad()
def test_modalities_video_only_audio_only_and_image():
    model = make_model()
    video_only = sample_media(7, 0, 4)
    batch, plans = collate(model, [video_only], [PROMPT])
    assert "input_features" not in batch and plans[0].num_frames == 7
    logits = model(**batch).logits
    assert torch.isfinite(logits).all()

    # an image with 4 s of audio is shown for the whole audio: same as the frame repeated 8 times
    image_audio = sample_media(1, 4.0, 5)
    batch, plans = collate(model, [image_audio], [PROMPT])
    media = {k: v for k, v in batch.items() if k not in ("input_ids", "attention_mask")}
    as_image = model.get_audio_visual_features(**media, video_is_image=torch.tensor([True]))
    repeated = dict(media, pixel_values_videos=media["pixel_values_videos"].expand(-1, 8, -1, -1, -1),
                    video_frame_mask=torch.ones(1, 8, dtype=torch.bool))
    as_video = model.get_audio_visual_features(**repeated)
    # same values by construction, computed once vs 8 times (other batch shapes): a few ulps, measured 6e-8
    assert torch.allclose(as_image.embeds, as_video.embeds, atol=1e-6)
    assert as_image.frame_counts.tolist() == [8]


@torch.no_grad()
def test_inputs_embeds_with_media_equal_input_ids_in_forward_and_generate():
    # transformers' VLM convention: the placeholder rows of given embeddings are found by value and get the media
    model = make_model()
    batch, _ = collate(model, [sample_media(6, 3.0, 1), sample_media(3, 1.0, 2)], [PROMPT, ([1, 20], [21])])
    input_ids = batch.pop("input_ids")
    embeds = model.get_input_embeddings()(input_ids)
    from_ids = model(input_ids=input_ids, **batch)
    from_embeds = model(inputs_embeds=embeds, **batch)
    torch.testing.assert_close(from_embeds.logits, from_ids.logits, atol=0, rtol=0)
    torch.testing.assert_close(from_embeds.audio_visual_embeds, from_ids.audio_visual_embeds, atol=0, rtol=0)
    kwargs = dict(max_new_tokens=5, do_sample=False, pad_token_id=0)
    generated_from_ids = model.generate(input_ids=input_ids, **batch, **kwargs)[:, input_ids.shape[1]:]
    generated_from_embeds = model.generate(inputs_embeds=embeds, **batch, **kwargs)  # only the new tokens
    assert generated_from_embeds.tolist() == generated_from_ids.tolist()


def test_inputs_embeds_need_a_placeholder_row_in_the_vocabulary():
    model = make_model()
    vocab = model.get_input_embeddings().num_embeddings
    model.config.audio_visual_token_id = vocab  # as a checkpoint whose vocabulary was never resized for it
    batch, _ = collate(model, [sample_media(2, 1.0, 0)], [PROMPT])
    embeds = model.get_input_embeddings()(batch.pop("input_ids").clamp(max=vocab - 1))
    with pytest.raises(ValueError, match=rf"id {vocab}\) has no row in the input embeddings.*input_ids"):
        model(inputs_embeds=embeds, **batch)


def test_placeholder_count_mismatch_is_a_clear_error():
    model = make_model()
    batch, _ = collate(model, [sample_media(4, 2.0, 0)], [PROMPT])
    batch["input_ids"] = batch["input_ids"][:, 1:]  # drop one token: still all placeholders
    batch["input_ids"][0, 5] = 7  # and one placeholder less
    batch["attention_mask"] = batch["attention_mask"][:, 1:]
    with pytest.raises(ValueError, match="placeholder"):
        model(**batch)


def test_frozen_encoders_get_no_gradient_and_loss_reports_both_terms():
    model = make_model()
    model.train()
    model.freeze_encoders()
    batch, _ = collate(model, [sample_media(4, 2.0, 0)], [PROMPT])
    labels = batch["input_ids"].clone()
    labels[labels == model.config.audio_visual_token_id] = -100
    out = model(**batch, labels=labels)
    # the same sum recomputed: allclose's defaults (rtol 1e-5) cover one rounding of an O(6) loss (measured 0)
    assert torch.allclose(out.loss, out.lm_loss + model.config.diversity_loss_weight * out.diversity_loss)
    out.loss.backward()
    for name, module in model.model.encoder_modules().items():
        assert all(p.grad is None for p in module.parameters()), name
    assert model.model.connector.qformer.layers[0].cross_attention.query.weight.grad is not None
    assert model.model.connector.speech_projection.weight.grad is not None
    assert model.model.connector.audio_projection.weight.grad is not None


@torch.no_grad()
def test_return_dict_false_gives_the_output_fields_as_a_tuple():
    model = make_model()
    batch, _ = collate(model, [sample_media(4, 2.0, 0)], [PROMPT])
    labels = batch["input_ids"].masked_fill(batch["input_ids"] == model.config.audio_visual_token_id, -100)
    out = model(**batch, labels=labels)
    as_tuple = model(**batch, labels=labels, return_dict=False)
    assert isinstance(as_tuple, tuple)
    # transformers' multimodal order first (loss, logits, cache, encoder outputs as tuples), then FAVOR's own fields
    expected = [
        out.loss, out.logits, out.cache, out.image_outputs.to_tuple(), out.audio_outputs.to_tuple(),
        out.lm_loss, out.diversity_loss, out.audio_visual_embeds,
    ]
    assert len(as_tuple) == len(expected)
    for got, want in zip(as_tuple, expected):
        if isinstance(want, torch.Tensor):
            assert torch.equal(got, want)
        elif isinstance(want, tuple):
            assert len(got) == len(want) and all(torch.equal(g, w) for g, w in zip(got, want))
    inner = model.model(**batch, return_dict=False)
    assert isinstance(inner, tuple) and torch.equal(inner[0], model.model(**batch).last_hidden_state)
    # config.return_dict=False too (the inner call still hands the head a dataclass)
    model.config.return_dict = False
    assert isinstance(model(**batch), tuple)


@torch.no_grad()
def test_image_and_audio_encoder_outputs_are_returned():
    # transformers' multimodal outputs: the vision tower's per-layer outputs when asked for, the tokens as pooler_output
    model = make_model()
    model.set_attn_implementation("eager")  # attention maps need the eager path
    batch, _ = collate(model, [sample_media(3, 1.0, 1), sample_media(2, 1.0, 2)], [PROMPT, PROMPT])
    out = model(**batch, output_hidden_states=True, output_attentions=True)
    media = {k: v for k, v in batch.items() if k not in ("input_ids", "attention_mask")}
    visual = model.model.get_visual_features(batch["pixel_values_videos"], batch["video_frame_mask"])
    torch.testing.assert_close(out.image_outputs.pooler_output, visual, atol=0, rtol=0)
    layers = model.config.vision_config.num_hidden_layers
    real_frames = int(batch["video_frame_mask"].sum())
    assert len(out.image_outputs.hidden_states) == layers + 1 and len(out.image_outputs.attentions) == layers
    assert out.image_outputs.hidden_states[-1].shape[0] == real_frames
    assert out.image_outputs.attentions[0].shape[:2] == (real_frames, model.config.vision_config.num_attention_heads)
    speech = model.model.get_speech_features(batch["input_features"])
    torch.testing.assert_close(out.audio_outputs.last_hidden_state, speech, atol=0, rtol=0)
    assert out.audio_outputs.pooler_output.shape[:2] == (2, speech.shape[1])
    # without the flags: no per-layer outputs, same logits
    plain = model(**batch)
    assert plain.image_outputs.hidden_states is None and plain.image_outputs.attentions is None
    torch.testing.assert_close(plain.logits, out.logits, atol=0, rtol=0)
    assert model(input_ids=batch["input_ids"]).image_outputs is None  # text only
    assert model.model.get_media_features(**media).image_outputs.pooler_output.shape == visual.shape


@torch.no_grad()
def test_frames_encoded_in_batches_equal_one_batch():
    # long videos go through the visual encoder a few hundred frames at a time; each frame is encoded on its own
    model = make_model()
    batch, _ = collate(model, [sample_media(5, 1.0, 1), sample_media(3, 1.0, 2)], [PROMPT, PROMPT])
    pixels, mask = batch["pixel_values_videos"], batch["video_frame_mask"]
    whole = model.model.encode_frames(pixels, mask, output_hidden_states=True, output_attentions=True)
    model.model.frames_per_visual_batch = 3  # 8 real frames: batches of 3, 3, 2
    parts = model.model.encode_frames(pixels, mask, output_hidden_states=True, output_attentions=True)
    # frames are independent: batch size only changes matmul blocking, a few ulps of O(1) tokens
    torch.testing.assert_close(parts.pooler_output, whole.pooler_output, atol=1e-6, rtol=0)
    torch.testing.assert_close(parts.last_hidden_state, whole.last_hidden_state, atol=1e-6, rtol=0)
    assert len(parts.hidden_states) == len(whole.hidden_states) and len(parts.attentions) == len(whole.attentions)
    for a, b in zip(parts.hidden_states + parts.attentions, whole.hidden_states + whole.attentions):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=0)
    # without padding frames the tokens are a view of the encoder's output, not a scattered copy
    full = torch.ones_like(mask)
    assert model.model.encode_frames(pixels, full).pooler_output._base is not None


@pytest.mark.parametrize("use_reentrant", [True, False])
def test_gradient_checkpointing_gives_the_gradients_of_a_plain_backward(use_reentrant):
    # reentrant checkpointing only connects a layer's positional tensor inputs and top-level tensor outputs to the
    # graph: the connector's layers must hand it every tensor that carries a gradient that way
    batch, _ = collate(make_model(), [sample_media(4, 2.0, 0)], [PROMPT])
    labels = batch["input_ids"].masked_fill(batch["input_ids"] == make_model().config.audio_visual_token_id, -100)
    grads = []
    for checkpointing in (False, True):
        model = make_model().train()
        for module in model.modules():  # same function in both runs: no dropout masks to draw
            if isinstance(module, torch.nn.Dropout):
                module.p = 0.0
        model.model.connector.config.connector_dropout = 0.0
        if checkpointing:
            model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": use_reentrant})
        model(**batch, labels=labels).loss.backward()
        grads.append({n: p.grad for n, p in model.named_parameters() if n.startswith("model.connector.")})
    assert all(g is not None for g in grads[1].values()), [n for n, g in grads[1].items() if g is None]
    for name, plain in grads[0].items():
        # recomputed forward, same ops: equal up to a few ulps of O(1) gradients
        torch.testing.assert_close(grads[1][name], plain, atol=1e-6, rtol=1e-5, msg=name)
