"""Both processors on transformers' processor-kwargs conventions (`models/common/processing_audio_visual.py`): flat and
per-modality keywords give the same batch, a keyword given twice or of a bad value is refused before any decoding,
unknown ones are ignored with transformers' warning, the video keywords pick the frames, the pixel and padding
settings apply, waveforms without a rate are at the feature extractor's rate, nested media lists are read, and chat
templates (the processor's own, with system messages, or a custom one) are tokenised as written.

Tiny processors: FAVOR's (`tiny_processor`, 28 px, 2 fps, placeholder `<AV>` = 512) and AV-LLM's
(`tiny_av_llm_processor`, T = 4 frames, placeholder `<av_media>` = 512); a generated 2 s clip at 4 fps with sound.
"""

import logging

import numpy as np
import pytest
import torch

from transformers_av.media import load_video
from transformers_av.models.av_llm.token_counts import linear_connector_token_count
from transformers_av.presets.tiny import tiny_av_llm_processor, tiny_favor_config, tiny_processor
from transformers_av.testing import make_av_clip, make_image

PLACEHOLDER_ID = 512
PROCESSORS = {
    "favor": lambda: tiny_processor(tiny_favor_config("video_salmonn", image_size=28)),
    "av_llm": tiny_av_llm_processor,
}


@pytest.fixture(scope="module", params=list(PROCESSORS))
def processor(request):
    return PROCESSORS[request.param]()


@pytest.fixture(scope="module")
def favor():
    return PROCESSORS["favor"]()


@pytest.fixture(scope="module")
def av_llm():
    return PROCESSORS["av_llm"]()


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    return make_av_clip(tmp_path_factory.mktemp("kwargs") / "clip.mp4", seconds=2.0, fps=4)


def same_batch(first, second):
    assert set(first) == set(second)
    for key in first:
        assert torch.equal(torch.as_tensor(first[key]), torch.as_tensor(second[key])), key


def test_flat_and_per_modality_keywords_give_the_same_padded_batch(processor, clip):
    flat = processor(text="What beeps?", videos=clip.path, padding="max_length", max_length=120, padding_side="right")
    nested = processor(text="What beeps?", videos=clip.path,
                       text_kwargs={"padding": "max_length", "max_length": 120, "padding_side": "right"})
    same_batch(flat, nested)
    unpadded = processor(text="What beeps?", videos=clip.path)
    length = unpadded["input_ids"].shape[1]
    pad_id = processor.tokenizer.pad_token_id or 0
    assert flat["input_ids"].shape == (1, 120)
    assert flat["input_ids"][0, :length].tolist() == unpadded["input_ids"][0].tolist()
    assert flat["input_ids"][0, length:].tolist() == [pad_id] * (120 - length)
    assert flat["attention_mask"][0].tolist() == [1] * length + [0] * (120 - length)
    # pad_to_multiple_of rounds the longest row up
    rounded = processor(text="What beeps?", videos=clip.path, pad_to_multiple_of=64)
    assert rounded["input_ids"].shape[1] == -(-length // 64) * 64


def test_a_keyword_twice_or_a_bad_value_is_refused_before_decoding(processor, clip, monkeypatch):
    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded a video")

    module = __import__(type(processor).__module__, fromlist=["load_video"])
    monkeypatch.setattr(module, "load_video", no_decoding)
    with pytest.raises(ValueError, match="Keyword argument padding was passed two times"):
        processor(text="q", videos=clip.path, padding="longest", text_kwargs={"padding": "max_length"})
    with pytest.raises(ValueError, match=r"`num_frames` must be a positive integer \(or None\), got 2.5"):
        processor(text="q", videos=clip.path, num_frames=2.5)
    with pytest.raises(ValueError, match="padding_side must be 'left' or 'right', got 'up'"):
        processor(text="q", videos=clip.path, padding_side="up")
    with pytest.raises(ValueError, match="padding='max_length' needs `max_length`"):
        processor(text="q", videos=clip.path, padding="max_length")


def test_an_unknown_keyword_is_ignored_with_transformers_warning(processor, clip):
    records = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = records.append
    logger = logging.getLogger("transformers")
    logger.addHandler(handler)
    keyword = f"not_a_setting_of_{type(processor).__name__}"  # transformers warns once per message
    try:
        with_unknown = processor(text="q", videos=clip.path, **{keyword: 3})
    finally:
        logger.removeHandler(handler)
    assert [r.getMessage() for r in records] == [
        f"Keyword argument `{keyword}` is not a valid argument for this processor and will be ignored."
    ]
    same_batch(with_unknown, processor(text="q", videos=clip.path))


def test_video_keywords_pick_the_frames(favor, clip):
    default = favor(text="q", videos=clip.path)["pixel_values_videos"]
    assert default.shape[1] == 4  # 2 fps over 2 s
    transform = lambda frames: favor.image_processor.preprocess_frames(frames).numpy()  # noqa: E731
    three = favor(text="q", videos=clip.path, num_frames=3)["pixel_values_videos"][0]
    expected = load_video(clip.path, sampling="uniform", num_frames=3, frames_transform=transform).frames
    assert torch.equal(three, torch.from_numpy(expected))
    one_per_second = favor(text="q", videos=clip.path, videos_kwargs={"fps": 1})["pixel_values_videos"][0]
    expected = load_video(clip.path, sampling="fps", fps=1, frames_transform=transform).frames
    assert one_per_second.shape[0] == 2 and torch.equal(one_per_second, torch.from_numpy(expected))
    first_second = favor(text="q", videos=clip.path, max_seconds=1.0)["pixel_values_videos"][0]
    assert torch.equal(first_second, default[0, :2])


def test_av_llm_num_frames_sets_the_frames_and_the_placeholder_run(av_llm, clip):
    batch = av_llm(text="<VIS> q", videos=clip.path, num_frames=2)
    assert batch["pixel_values_videos"].shape[1] == 2
    expected_run = linear_connector_token_count(2, av_llm.num_patches, 0, visual=True, audio=False)
    assert int((batch["input_ids"] == PLACEHOLDER_ID).sum()) == expected_run
    # frames given in memory: sampled to the processor's T = 4 unless do_sample_frames=False keeps all 8
    frames = np.random.default_rng(0).integers(0, 255, (8, 32, 32, 3), dtype=np.uint8)
    assert av_llm(text="<VIS> q", videos=frames)["pixel_values_videos"].shape[1] == 4
    kept = av_llm(text="<VIS> q", videos=frames, do_sample_frames=False)["pixel_values_videos"][0]
    assert kept.shape[0] == 8 and torch.equal(kept, torch.from_numpy(av_llm._frames_to_pixels(frames)))


def test_pixel_settings_apply_to_images_and_video_frames(favor, clip):
    image = make_image(color="red", size=(40, 40))
    plain = favor(text="q", images=image, do_normalize=False)["pixel_values_videos"][0]
    assert torch.equal(plain, favor.image_processor.preprocess_frames(np.array(image)[None], do_normalize=False))
    assert 0.0 <= plain.min() and plain.max() <= 1.0 + 1e-4  # rescaled only (bicubic may overshoot a little)
    negative = favor(text="q", videos=clip.path, videos_kwargs={"rescale_factor": -1 / 255})["pixel_values_videos"]
    assert negative[0, 0].mean() < favor(text="q", videos=clip.path)["pixel_values_videos"][0, 0].mean()


def test_a_waveform_without_rate_is_at_the_feature_extractors_rate(processor):
    rate = processor.feature_extractor.sampling_rate
    wave = np.random.default_rng(1).uniform(-0.5, 0.5, rate).astype(np.float32)
    same_batch(processor(text="q", audio=wave), processor(text="q", audio=wave, sampling_rate=rate))


def test_nested_media_lists_and_numpy_tensors(processor, clip):
    image = make_image(color="blue", size=(40, 40))
    texts = ["What colour?", "Say hello."]
    nested = processor(text=texts, images=[[image], []], return_tensors="np")
    flat = processor(text=texts, images=[image, None], return_tensors="np")
    assert all(isinstance(value, np.ndarray) for value in nested.values())
    same_batch(nested, flat)
    # a channels-first numpy video (transformers' layout) is the same video as its channels-last form
    frames = np.random.default_rng(2).integers(0, 255, (4, 32, 32, 3), dtype=np.uint8)
    same_batch(processor(text="q", videos=frames), processor(text="q", videos=frames.transpose(0, 3, 1, 2)))


def test_replacement_offsets_point_at_the_placeholder_runs(processor, clip):
    batch = processor(text=["What beeps?", "Say hello."], videos=[clip.path, None], return_text_replacement_offsets=True,
                      padding=False, return_tensors=None)
    (entry,), nothing = batch["text_replacement_offsets"]
    assert nothing == []
    run = int(sum(token == PLACEHOLDER_ID for token in batch["input_ids"][0]))
    assert entry["type"] == "video" and entry["text"] == processor.video_token
    assert entry["replacement"] == processor.video_token * run
    start, end = entry["new_span"]
    assert end - start == len(processor.video_token) * run and entry["span"] == (start, start + len(entry["text"]))


def test_chat_template_tokenised_as_written_with_system_message(processor):
    messages = [
        {"role": "system", "content": [{"type": "text", "text": "Be brief."}]},
        {"role": "user", "content": [{"type": "text", "text": "Say hello."}]},
    ]
    rendered = processor.apply_chat_template(messages)
    assert rendered == "Be brief. USER: Say hello.\nASSISTANT:"
    ids = processor.apply_chat_template(messages, tokenize=True)
    # the rendered conversation is the prompt: no second "USER: ... ASSISTANT:" around it
    assert ids.tolist() == [processor.tokenizer(rendered)["input_ids"]]
    custom = "{% for m in messages %}<<{{ m['role'] }}>>{{ m['content'][0]['text'] }}{% endfor %}"
    batch = processor.apply_chat_template(messages, chat_template=custom, tokenize=True, return_dict=True)
    assert processor.tokenizer.decode(batch["input_ids"][0], skip_special_tokens=True) == (
        "<<system>>Be brief.<<user>>Say hello."
    )


def test_assistant_mask_marks_the_answers(processor):
    messages = [
        {"role": "user", "content": [{"type": "text", "text": "Say hello."}]},
        {"role": "assistant", "content": [{"type": "text", "text": "Hello there."}]},
    ]
    template = ("{% for m in messages %}{% if m['role'] == 'user' %}USER: {{ m['content'][0]['text'] }}\n"
                "{% else %}ASSISTANT: {% generation %}{{ m['content'][0]['text'] }}{% endgeneration %}{% endif %}"
                "{% endfor %}")
    batch = processor.apply_chat_template(messages, chat_template=template, tokenize=True, return_dict=True,
                                          return_assistant_tokens_mask=True, add_generation_prompt=False,
                                          return_tensors="pt")
    marked = batch["input_ids"][0][batch["assistant_masks"][0].bool()]
    assert processor.tokenizer.decode(marked) == "Hello there."
