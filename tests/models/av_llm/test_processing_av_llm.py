"""AvLlmProcessor (Audio-Visual LLM, Shu et al. 2023): uniform frames, K CLAP segments, the modality token of the
prompt deciding which media are loaded, the template, labels and the model-config checks.

Tiny processor (`tiny_av_llm_processor`): T = 4 frames, K = 2 segments, P = 4 patches, CLIP pixels at 28 px, a 16-bin
CLAP log-mel at 16 kHz over 2 s windows (32,000 samples, 2 * 100 + 1 = 201 frames), token ids 512 = <av_media>,
513 = <VIS>, 514 = <AUD>, 515 = <AUD_VIS>; BOS 1, EOS 2.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers import AutoTokenizer, ClapFeatureExtractor, CLIPImageProcessor

from transformers_av import AvLlmForConditionalGeneration
from transformers_av import media as media_io
from transformers_av.models.av_llm import processing_av_llm
from transformers_av.models.av_llm.token_counts import split_into_segments
from transformers_av.models.av_llm.processing_av_llm import AvLlmProcessor
from transformers_av.testing import make_av_clip, make_frames, make_image, write_video
from transformers_av.presets.tiny import tiny_av_llm_config
from transformers_av.presets.tiny import ASSETS, tiny_av_llm_processor

MEDIA, VIS, AUD, AUD_VIS = 512, 513, 514, 515
RATE = 16000
WINDOW = 2 * RATE  # the feature extractor's window: max_length_s = 2
EIGHT_COLOURS = ["red", "lime", "blue", "yellow", "cyan", "magenta", "white", "black"]


@pytest.fixture(scope="module")
def processor():
    return tiny_av_llm_processor()


def clip_pixels(frames):
    """What CLIP sees, computed independently: a fresh CLIPImageProcessor at 28 px on (k, H, W, 3) uint8 frames."""
    image_processor = CLIPImageProcessor(size={"shortest_edge": 28}, crop_size={"height": 28, "width": 28})
    return torch.from_numpy(np.asarray(image_processor(list(frames), return_tensors="np")["pixel_values"]))


def clap_extractor(rate=RATE):
    """A fresh ClapFeatureExtractor with the tiny processor's settings: 16 mel bins, 10 ms hop, 2 s window."""
    return ClapFeatureExtractor(
        feature_size=16, sampling_rate=rate, hop_length=rate // 100, max_length_s=2, fft_window_size=rate // 40,
        frequency_max=rate // 2, truncation="rand_trunc", padding="repeatpad",
    )


def clap_features(segments):
    """The tiny ClapFeatureExtractor on the given segments: (n, 1, 201, 16) features and is_longer (n,)."""
    out = clap_extractor()([np.asarray(s, dtype=np.float32) for s in segments], sampling_rate=RATE, return_tensors="pt")
    return out["input_features"], out["is_longer"].reshape(-1)


def noise(samples, seed=0):
    return np.random.default_rng(seed).uniform(-0.5, 0.5, samples).astype(np.float32)


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    """Lossless clips (frames decode exactly) with one colour per frame, and a silent video (no audio track)."""
    folder = tmp_path_factory.mktemp("av_llm_media")
    one_second = make_av_clip(folder / "one_second.mp4", seconds=1.0, fps=8, size=(32, 32), lossless=True,
                              colors=EIGHT_COLOURS)
    quarter = make_av_clip(folder / "quarter.mp4", seconds=0.25, fps=8, size=(32, 32), lossless=True,
                           colors=EIGHT_COLOURS[:2])
    silent = write_video(folder / "silent.mp4", make_frames(8, 32, 32), fps=8)
    return {"one_second": one_second, "quarter": quarter, "silent": silent}


# -- frames -----------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "name, indices",
    [
        # 8 frames over D = 1 s: targets k * 1 / 4 = 0, .25, .5, .75 s -> frames 0, 2, 4, 6 (frame i is on screen
        # during [i / 8, (i + 1) / 8))
        ("one_second", [0, 2, 4, 6]),
        # 2 frames over D = 0.25 s: targets 0, .0625, .125, .1875 s -> frames 0, 0, 1, 1 (repeated to T = 4)
        ("quarter", [0, 0, 1, 1]),
    ],
)
def test_a_video_gives_num_frames_uniform_frames(processor, videos, name, indices):
    clip = videos[name]
    batch = processor(text="<VIS> What colour is it?", videos=clip.path)
    assert batch["pixel_values_videos"].shape == (1, 4, 3, 28, 28)
    assert batch["video_frame_mask"].sum().item() == 4
    loaded = media_io.load_video(clip.path, sampling="uniform", num_frames=4)
    assert loaded.source_frame_indices.tolist() == indices
    assert np.array_equal(loaded.frames, clip.frames[indices])  # lossless: exactly the frames written
    assert torch.equal(batch["pixel_values_videos"][0], clip_pixels(loaded.frames))
    # <VIS> with 4 frames: 4 + 4 placeholders
    assert (batch["input_ids"] == MEDIA).sum().item() == 8


def test_an_image_gives_one_frame(processor):
    image = make_image(color="blue", size=(40, 56), square_color="red")
    batch = processor(text="<VIS> What is shown?", images=image)
    assert batch["pixel_values_videos"].shape == (1, 1, 3, 28, 28)
    assert batch["video_frame_mask"].tolist() == [[True]]
    assert torch.equal(batch["pixel_values_videos"][0], clip_pixels(np.asarray(image)[None]))
    assert (batch["input_ids"] == MEDIA).sum().item() == 1 + 4  # one temporal token + P spatial ones
    assert "audio_input_features" not in batch


def test_a_video_and_an_image_in_one_batch_pad_the_frames(processor, videos):
    image = make_image(color="lime", size=(28, 28))
    batch = processor(text=["<VIS> a", "<VIS> b"], videos=[videos["one_second"].path, None], images=[None, image])
    assert batch["video_frame_mask"].tolist() == [[True] * 4, [True, False, False, False]]
    assert (batch["input_ids"] == MEDIA).sum(1).tolist() == [8, 5]
    assert torch.count_nonzero(batch["pixel_values_videos"][1, 1:]) == 0


# -- audio ------------------------------------------------------------------------------------------------------------
def test_audio_is_cut_into_k_segments_by_hand(processor):
    waveform = noise(RATE + 1)  # 16,001 samples, K = 2: two segments of 8,000, the last sample dropped
    batch = processor(text="<AUD> What do you hear?", audio=waveform, sampling_rate=RATE)
    features, is_longer = clap_features([waveform[:8000], waveform[8000:16000]])
    assert [len(s) for s in split_into_segments(waveform, 2)] == [8000, 8000]
    assert batch["audio_input_features"].shape == (1, 2, 1, 201, 16)
    assert torch.equal(batch["audio_input_features"][0], features)
    assert batch["audio_segment_mask"].tolist() == [[True, True]]
    assert batch["audio_is_longer"].tolist() == [is_longer.tolist()] == [[False, False]]
    assert (batch["input_ids"] == MEDIA).sum().item() == 2  # <AUD>: K tokens
    assert "pixel_values_videos" not in batch


def test_three_segments_expand_to_what_the_model_produces():
    config = tiny_av_llm_config(num_audio_segments=3)
    processor = tiny_av_llm_processor(config)
    waveform = noise(RATE + 1, seed=1)  # 16,001 // 3 = 5,333 samples per segment, the last 2 dropped
    batch = processor(text="<AUD> What do you hear?", audio=waveform, sampling_rate=RATE)
    features, _ = clap_features([waveform[0:5333], waveform[5333:10666], waveform[10666:15999]])
    assert torch.equal(batch["audio_input_features"][0], features)
    assert (batch["input_ids"] == MEDIA).sum().item() == 3  # K = 3 audio tokens (not the 2 keys of a dict)
    torch.manual_seed(0)
    model = AvLlmForConditionalGeneration(config).eval()
    with torch.no_grad():
        _, media = model.model.embed_prompt(batch["input_ids"], **{
            k: v for k, v in batch.items() if k not in ("input_ids", "attention_mask")
        })
    assert media.token_counts.tolist() == [3]


def test_a_segment_longer_than_the_window_is_centre_cropped(processor):
    waveform = noise(5 * RATE, seed=2)  # 80,000 samples -> 2 segments of 40,000 > 32,000 (the window)
    first = processor(text="<AUD> Listen.", audio=waveform, sampling_rate=RATE)
    second = processor(text="<AUD> Listen.", audio=waveform, sampling_rate=RATE)
    assert torch.equal(first["audio_input_features"], second["audio_input_features"])  # no random crop
    # centre: start (40,000 - 32,000) // 2 = 4,000 inside each segment -> [4,000, 36,000) and [44,000, 76,000)
    features, is_longer = clap_features([waveform[4000:36000], waveform[44000:76000]])
    assert torch.equal(first["audio_input_features"][0], features)
    assert first["audio_is_longer"].tolist() == [[False, False]] and is_longer.tolist() == [False, False]


# -- the modality token decides what is loaded ------------------------------------------------------------------------
@pytest.fixture
def audio_loads(monkeypatch):
    """The sources `load_audio` is called with (the processor module's own `load_audio`, from `transformers_av.media`)."""
    sources = []
    original = media_io.load_audio

    def counting(source, **kwargs):
        sources.append(source)
        return original(source, **kwargs)

    monkeypatch.setattr(processing_av_llm, "load_audio", counting)
    return sources


def test_vis_with_a_sounding_video_loads_no_audio(processor, videos, audio_loads):
    clip = videos["one_second"]
    assert media_io.has_audio_track(clip.path)
    alone = processor(text="<VIS> What colour?", videos=clip.path)
    assert "audio_input_features" not in alone and audio_loads == []

    tone = noise(RATE, seed=3)
    batch = processor(text=["<VIS> What colour?", "<AUD> What sound?"], videos=[clip.path, None],
                      audio=[None, tone], sampling_rate=RATE)
    assert len(audio_loads) == 1 and audio_loads[0] is tone  # only the <AUD> sample's audio is decoded
    assert batch["audio_segment_mask"].tolist() == [[False, False], [True, True]]
    assert torch.count_nonzero(batch["audio_input_features"][0]) == 0
    assert batch["video_frame_mask"].tolist() == [[True] * 4, [False] * 4]
    assert (batch["input_ids"] == MEDIA).sum(1).tolist() == [8, 2]


def test_no_modality_token_uses_the_video_and_its_sound(processor, videos, audio_loads):
    clip = videos["one_second"]
    batch = processor(text="What happens?", videos=clip.path)
    assert [str(s) for s in audio_loads] == [str(clip.path)]
    assert (batch["input_ids"] == MEDIA).sum().item() == 4 + 4 + 2
    assert (batch["input_ids"] == AUD_VIS).sum().item() == 1  # the modality token is written before the placeholder
    waveform = media_io.load_audio(clip.path, sampling_rate=RATE).waveform
    segments = split_into_segments(waveform, 2)
    features, _ = clap_features(segments)  # each segment is under the 2 s window: no crop
    assert torch.equal(batch["audio_input_features"][0], features)


def test_aud_with_a_silent_video_names_the_sample(processor, videos):
    tone = noise(RATE)
    with pytest.raises(ValueError, match=r"Sample 1: .*<AUD>.*no sound track"):
        processor(text=["<AUD> What sound?", "<AUD> What sound?"], videos=[None, videos["silent"]],
                  audio=[tone, None], sampling_rate=RATE)
    with pytest.raises(ValueError, match=r"Sample 0: .*<VIS>.*no video or image"):
        processor(text="<VIS> What colour?", audio=tone, sampling_rate=RATE)
    # the same silent video is fine for <VIS>
    assert processor(text="<VIS> What colour?", videos=videos["silent"])["video_frame_mask"].sum().item() == 4


def test_two_modality_tokens_are_an_error(processor, videos):
    with pytest.raises(ValueError, match=r"Sample 0: .*several modalities"):
        processor(text="<VIS> and <AUD> at once?", videos=videos["one_second"].path)
    with pytest.raises(ValueError, match=r"Sample 0: .*placeholder.*2 times"):
        processor(text="<av_media> <av_media>", videos=videos["one_second"].path)


# -- prompt, template and labels --------------------------------------------------------------------------------------
def ids_of(processor, text):
    return processor.tokenizer(text, add_special_tokens=False)["input_ids"]


def test_template_wraps_a_question_and_a_full_prompt_is_used_as_written(processor, videos):
    image = make_image(color="blue", size=(28, 28))
    wrapped = processor(text="<VIS>   What colour?", images=image)
    # template "USER: {media} {question}\nASSISTANT:" with media = <VIS><av_media> and the token taken out of the
    # question: BOS, "USER: <VIS>", 1 + 4 placeholders, " What colour?\nASSISTANT:"
    expected = [1] + ids_of(processor, "USER: <VIS>") + [MEDIA] * 5 + ids_of(processor, " What colour?\nASSISTANT:")
    assert wrapped["input_ids"][0].tolist() == expected
    assert processor.tokenizer.decode(wrapped["input_ids"][0]) == (
        "<s> USER: <VIS>" + "<av_media>" * 5 + " What colour?\nASSISTANT:"
    )
    written = processor(text="USER: <VIS><av_media> What colour?\nASSISTANT:", images=image)
    assert torch.equal(written["input_ids"], wrapped["input_ids"])

    # a full prompt without a modality token: the sample's modality (video + its sound) goes before the placeholder
    full = processor(text="Watch <av_media> and describe.", videos=videos["one_second"].path)
    assert full["input_ids"][0].tolist() == (
        [1] + ids_of(processor, "Watch <AUD_VIS>") + [MEDIA] * 10 + ids_of(processor, " and describe.")
    )
    # a full prompt holding its modality token elsewhere is left exactly as written
    as_written = processor(text="<AUD> Listen: <av_media>", audio=noise(RATE), sampling_rate=RATE)
    assert as_written["input_ids"][0].tolist() == [1] + ids_of(processor, "<AUD> Listen: ") + [MEDIA] * 2


def test_labels_are_the_answer_and_eos_only(processor):
    image = make_image(color="red", size=(28, 28))
    answers = ["A red square.", "Blue."]
    for side in ("left", "right"):
        batch = processor(text=["<VIS> What is it?", "<VIS> Which colour is the sky?"], images=[image, image],
                          answers=answers, padding_side=side)
        for i, answer in enumerate(answers):
            target = ids_of(processor, answer + "</s>")
            assert target[-1] == 2
            labelled = (batch["labels"][i] != -100).nonzero()[:, 0]
            assert labelled.numel() == len(target)
            assert batch["labels"][i, labelled].tolist() == target
            assert batch["input_ids"][i, labelled].tolist() == target
            assert labelled.diff().eq(1).all()  # one contiguous span ...
            real = batch["attention_mask"][i].nonzero()[:, 0]
            assert int(labelled[-1]) == int(real[-1])  # ... that ends the sample's real tokens
    without = processor(text="<VIS> What is it?", images=image)
    assert "labels" not in without


# -- the model config -------------------------------------------------------------------------------------------------
def test_from_model_config_checks_sampling_rate_and_token_ids():
    config = tiny_av_llm_config(audio_sampling_rate=48000)
    with pytest.raises(ValueError, match=r"16000 Hz .* audio_sampling_rate=48000"):
        AvLlmProcessor.from_model_config(
            config,
            image_processor=CLIPImageProcessor(size={"shortest_edge": 28}, crop_size={"height": 28, "width": 28}),
            feature_extractor=clap_extractor(RATE),
            tokenizer=AutoTokenizer.from_pretrained(ASSETS / "llama_tokenizer"),
        )
    with pytest.raises(ValueError, match=r"'<av_media>' id 512 but the model config expects 100"):
        tiny_av_llm_processor(tiny_av_llm_config(media_token_id=100))
    with pytest.raises(ValueError, match=r"'<VIS>' id 513 but the model config expects 514"):
        tiny_av_llm_processor(tiny_av_llm_config(visual_modality_token_id=514, audio_modality_token_id=513))
    processor = tiny_av_llm_processor(tiny_av_llm_config(num_frames=3, num_audio_segments=5))
    assert (processor.num_frames, processor.num_audio_segments, processor.num_patches) == (3, 5, 4)


# -- combinations and settings ------------------------------------------------------------------------------------------
def test_an_image_with_a_separate_audio_is_audio_visual(processor):
    wave = noise(3 * RATE)
    batch = processor(text="What is it?", images=make_image(color="red", size=(32, 32)), audio=wave, sampling_rate=RATE)
    # 1 frame + P = 4 patches + K = 2 segments, behind <AUD_VIS>
    assert int((batch["input_ids"] == MEDIA).sum()) == 1 + 4 + 2
    assert int((batch["input_ids"] == AUD_VIS).sum()) == 1
    assert batch["video_frame_mask"].tolist() == [[True]]
    expected, _ = clap_features(split_into_segments(wave, 2))
    assert torch.equal(batch["audio_input_features"][0], expected)


def test_a_text_only_sample_in_a_media_batch_has_no_media(processor, videos):
    batch = processor(text=["Describe it.", "Hello"], videos=[str(videos["one_second"].path), None])
    assert batch["video_frame_mask"].sum(-1).tolist() == [4, 0]
    assert batch["audio_segment_mask"].tolist() == [[True, True], [False, False]]
    assert int((batch["input_ids"][1] == MEDIA).sum()) == 0
    assert not bool(torch.isin(batch["input_ids"][1], torch.tensor([VIS, AUD, AUD_VIS])).any())


def test_aud_vis_with_a_silent_video_and_a_separate_audio(processor, videos):
    wave = noise(2 * RATE, seed=3)
    batch = processor(text="<AUD_VIS> What happens?", videos=str(videos["silent"]), audio=wave, sampling_rate=RATE)
    assert batch["video_frame_mask"].tolist() == [[True] * 4]
    expected, _ = clap_features(split_into_segments(wave, 2))
    assert torch.equal(batch["audio_input_features"][0], expected)


def test_use_video_audio_false(processor, videos, audio_loads):
    video = str(videos["one_second"].path)
    with pytest.raises(ValueError, match=r"Sample 0: .*<AUD>.*use_video_audio=False"):
        processor(text="<AUD> What do you hear?", videos=video, use_video_audio=False)
    batch = processor(text="What is it?", videos=video, use_video_audio=False)  # no token: frames only
    assert "audio_input_features" not in batch and audio_loads == []
    assert int((batch["input_ids"] == VIS).sum()) == 1


def test_max_video_seconds_cuts_the_frames_and_the_own_sound_track(videos):
    processor = tiny_av_llm_processor(max_video_seconds=0.5)
    clip = videos["one_second"]
    batch = processor(text="What is it?", videos=str(clip.path))
    # D = 0.5 s: targets 0, .125, .25, .375 s -> frames 0, 1, 2, 3
    frames = media_io.load_video(str(clip.path), sampling="uniform", num_frames=4).frames  # over the whole second
    all_eight = media_io.load_video(str(clip.path), fps=8).frames
    assert torch.equal(batch["pixel_values_videos"][0], clip_pixels(all_eight[:4]))
    assert not torch.equal(batch["pixel_values_videos"][0], clip_pixels(frames))
    # the sound track: its first 0.5 s (8,000 samples) in 2 segments of 4,000
    track = media_io.load_audio(str(clip.path), sampling_rate=RATE, max_seconds=0.5).waveform
    assert len(track) == 8000
    expected, _ = clap_features(split_into_segments(track, 2))
    assert torch.equal(batch["audio_input_features"][0], expected)


def test_a_fusion_extractor_gives_the_same_features_every_time():
    config = tiny_av_llm_config()
    fusion = ClapFeatureExtractor(
        feature_size=16, sampling_rate=RATE, hop_length=RATE // 100, max_length_s=2, fft_window_size=RATE // 40,
        frequency_max=RATE // 2, truncation="fusion", padding="repeatpad",
    )
    processor = AvLlmProcessor.from_model_config(
        config, image_processor=CLIPImageProcessor(size={"shortest_edge": 28}, crop_size={"height": 28, "width": 28}),
        feature_extractor=fusion, tokenizer=AutoTokenizer.from_pretrained(ASSETS / "llama_tokenizer"),
    )
    wave = noise(6 * RATE, seed=5)  # 3 s segments, longer than the 2 s window: centre-cropped
    runs = [processor(text="<AUD> q", audio=wave, sampling_rate=RATE) for _ in range(4)]
    assert runs[0]["audio_input_features"].shape == (1, 2, 4, 201, 16)  # fusion: 4 channels
    for run in runs[1:]:
        assert torch.equal(run["audio_input_features"], runs[0]["audio_input_features"])
    # the extractor would flag a random segment as "longer" (a training trick); the processor never does
    assert all(run["audio_is_longer"].tolist() == [[False, False]] for run in runs)


def test_max_length_cuts_the_answer_never_the_prompt(processor):
    wave = noise(RATE)
    full = processor(text="<AUD> q", audio=wave, sampling_rate=RATE, answers="a b c d e f")
    prompt_length = int((full["labels"] == -100).sum())
    cut = processor(text="<AUD> q", audio=wave, sampling_rate=RATE, answers="a b c d e f", max_length=prompt_length + 2)
    assert cut["input_ids"].shape[1] == prompt_length + 2
    assert torch.equal(cut["labels"][0, prompt_length:], full["labels"][0, prompt_length : prompt_length + 2])
    with pytest.raises(ValueError, match=r"Sample 0: the prompt with its 2 media tokens needs"):
        processor(text="<AUD> q", audio=wave, sampling_rate=RATE, answers="a", max_length=prompt_length - 1)


def test_bad_call_arguments_fail_before_any_decoding(processor, audio_loads):
    # `num_frames` is transformers' video keyword (honoured: tests/models/common/test_processing_audio_visual.py)
    with pytest.raises(ValueError, match=r"`num_frames` must be a positive integer \(or None\), got 0"):
        processor(text="q", audio=noise(RATE), sampling_rate=RATE, num_frames=0)
    with pytest.raises(ValueError, match="padding_side must be 'left' or 'right'"):
        processor(text="q", audio=noise(RATE), sampling_rate=RATE, padding_side="middle")
    assert audio_loads == []


def test_a_question_keeps_its_line_breaks(processor):
    batch = processor(text="<AUD> line one\nline two", audio=noise(RATE), sampling_rate=RATE)
    text = processor.tokenizer.decode(batch["input_ids"][0])
    assert "line one\nline two" in text and "<AUD><av_media>" in text


def test_mark_modality_before_the_placeholder_or_first():
    from transformers_av.models.av_llm.processing_av_llm import mark_modality

    assert mark_modality("USER: <av_media> What is heard?", "audio") == "USER: <AUD><av_media> What is heard?"
    assert mark_modality("What colour is the screen?", "visual") == "<VIS> What colour is the screen?"
    assert mark_modality("<AUD_VIS> Why?", "audio_visual") == "<AUD_VIS> Why?"  # already named: unchanged
