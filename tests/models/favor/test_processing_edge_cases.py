"""FavorProcessor edge cases on media generated here: a 0.3 s clip, a 3-minute clip, bad inputs, the prompt template.

Everything is synthetic (PyAV / soundfile through `transformers_av.testing`) and small, so the file runs in seconds.
"""

import math
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from transformers_av import FavorForConditionalGeneration
from transformers_av.media import MediaDecodeError, load_audio, load_video
from transformers_av.models.favor.processing_favor import DEFAULT_PROMPT_TEMPLATE
from transformers_av.testing import make_av_clip, make_frames, make_tone, tiny_favor_config, write_wav
from transformers_av.presets.tiny import tiny_processor

SR = 16000
AAC_FRAME = 1024  # samples per AAC frame (the encoder pads the last one with zeros)
SAMPLES_PER_FRAME = SR // 2  # one synchronised frame = 0.5 s of audio
LONG_SECONDS = 180
LONG_FPS = 4


@pytest.fixture(scope="module")
def config():
    return tiny_favor_config("video_salmonn", image_size=28)


@pytest.fixture(scope="module")
def processor(config):
    return tiny_processor(config)


@pytest.fixture(scope="module")
def short_clip(tmp_path_factory):
    """0.3 s, 10 fps (3 frames), 32x32, with a beeping AAC sound track."""
    return make_av_clip(tmp_path_factory.mktemp("short") / "short.mp4", seconds=0.3, fps=10, size=(32, 32))


@pytest.fixture(scope="module")
def long_clip(tmp_path_factory):
    """3 minutes, 32x32 at 4 fps (720 frames) with an AAC sound track (beeps every 20 s), plus the same sound track
    as a 16-bit WAV. Writing it takes ~0.5 s."""
    folder = tmp_path_factory.mktemp("long")
    clip = make_av_clip(folder / "long.mp4", seconds=LONG_SECONDS, fps=LONG_FPS, size=(32, 32),
                        beep_at=list(range(5, LONG_SECONDS, 20)))
    wav = write_wav(folder / "long.wav", clip.audio, SR)
    return clip, wav


def hand_token_count(num_video_frames: int, num_audio_samples: int, resolutions=((1, 3), (10, 30))) -> int:
    """The window plan written out: 0.5 s frames, padded to whole coarsest windows, tokens of the finest resolution."""
    frames = max(num_video_frames, math.ceil(num_audio_samples / SAMPLES_PER_FRAME))
    coarsest = max(k for k, _ in resolutions)
    padded = max(1, math.ceil(frames / coarsest)) * coarsest
    k, n = resolutions[0]
    return padded // k * n


def av_positions(batch, processor, row=0):
    ids = batch["input_ids"][row].tolist()
    positions = [i for i, x in enumerate(ids) if x == processor.audio_visual_token_id]
    return ids, positions


# -- a 0.3 s clip ----------------------------------------------------------------------------------------------------


def test_short_clip_with_sound_gives_a_valid_batch_and_runs_the_model(processor, config, short_clip):
    video = load_video(short_clip.path, fps=processor.video_fps)
    audio = load_audio(short_clip.path, sampling_rate=SR)
    assert video.num_frames == 1 and video.timestamps.tolist() == [0.0]  # targets t < 0.3 s at 2 fps: only t = 0
    # 4800 samples of sound, AAC-coded in whole 1024-sample frames
    assert 4800 <= len(audio.waveform) < 4800 + AAC_FRAME

    batch = processor(text="What beeps?", videos=short_clip.path)
    plan = processor.window_plan(video.num_frames, len(audio.waveform))
    assert plan.num_frames == 1 and plan.padded_frames == 10 and plan.windows == (10, 1)
    assert plan.num_tokens == hand_token_count(video.num_frames, len(audio.waveform)) == 30

    ids, positions = av_positions(batch, processor)
    assert len(positions) == plan.num_tokens
    assert positions == list(range(positions[0], positions[0] + plan.num_tokens))  # one contiguous run
    assert batch["pixel_values_videos"].shape == (1, 1, 3, 28, 28)
    assert batch["video_frame_mask"].tolist() == [[True]]
    assert batch["video_is_image"].tolist() == [False]
    assert batch["modality_mask"].tolist() == [[1.0, 1.0]]
    assert batch["input_features"].shape == (1, 80, 3000)  # one (padded) 30 s Whisper chunk
    assert int(batch["input_features_mask"].sum()) == math.ceil(len(audio.waveform) / 160)  # 10 ms mel hop
    assert batch["audio_input_features_mask"].sum() > 0  # BEATs fbank (video-SALMONN)
    assert batch["attention_mask"].all()
    for key, value in batch.items():
        if value.is_floating_point():
            assert torch.isfinite(value).all(), key

    model = FavorForConditionalGeneration(config).eval()
    with torch.no_grad():
        out = model(**batch)
    assert out.logits.shape == (1, len(ids), config.text_config.vocab_size)
    assert torch.isfinite(out.logits).all()


# -- a 3-minute clip -------------------------------------------------------------------------------------------------


def test_long_clip_frames_and_timestamps_are_exact(long_clip):
    clip, _ = long_clip
    video = load_video(clip.path, fps=2)
    assert video.num_frames == 360
    expected = np.arange(360) * 0.5  # 0, 0.5, ..., 179.5 (all exact in binary floating point)
    assert np.array_equal(video.timestamps, expected)
    assert np.array_equal(video.sample_times, expected)
    assert np.array_equal(video.source_frame_indices, np.arange(0, 720, 2))  # every other 4 fps frame
    assert video.duration == LONG_SECONDS and not video.truncated
    # the colour changes every second (make_av_clip): the frame at t = 0.5 k shows the colour of second floor(t)
    for k in (0, 1, 179, 358, 359):
        assert np.abs(video.frames[k, 0, 0].astype(int) - clip.color_at(k * 0.5)).max() <= 24, k


def test_long_clip_audio_lengths(long_clip):
    clip, wav = long_clip
    from_wav = load_audio(wav, sampling_rate=SR).waveform
    assert len(from_wav) == LONG_SECONDS * SR == 2_880_000  # exact to the sample
    assert np.abs(from_wav - clip.audio).max() <= 1 / 32768  # 16-bit PCM round trip

    # AAC codes whole frames of 1024 samples: the encoder zero-pads the last frame (2,880,000 = 2812.5 frames) and
    # FFmpeg's decoder returns it whole (the encoder's priming samples are dropped via the mp4 edit list, but the
    # trailing padding is not trimmed), so the sound track decodes to up to one AAC frame more than was written.
    from_mp4 = load_audio(clip.path, sampling_rate=SR).waveform
    assert LONG_SECONDS * SR <= len(from_mp4) < LONG_SECONDS * SR + AAC_FRAME
    # and it is the same sound, in time (no priming offset): the beeps line up with the source to AAC precision
    head = slice(0, LONG_SECONDS * SR)
    assert np.corrcoef(from_mp4[head], clip.audio)[0, 1] > 0.99


def test_long_clip_placeholders_follow_the_window_plan(processor, long_clip):
    clip, wav = long_clip
    aac_samples = len(load_audio(clip.path, sampling_rate=SR).waveform)
    # sample 0: the video with the WAV sound track; sample 1: the video with its own AAC sound track
    batch = processor(text=["What beeps?", "What beeps?"], videos=[clip.path, clip.path], audio=[wav, None])

    wav_plan = processor.window_plan(360, LONG_SECONDS * SR)
    aac_plan = processor.window_plan(360, aac_samples)
    assert wav_plan.num_frames == 360 and wav_plan.padded_frames == 360 and wav_plan.windows == (360, 36)
    assert wav_plan.num_tokens == hand_token_count(360, LONG_SECONDS * SR) == 1080  # 360 x 3 == 36 x 30
    assert aac_plan.num_tokens == hand_token_count(360, aac_samples)  # 1110 while the AAC padding is kept
    counts = (batch["input_ids"] == processor.audio_visual_token_id).sum(1).tolist()
    assert counts == [wav_plan.num_tokens, aac_plan.num_tokens]

    assert batch["pixel_values_videos"].shape == (2, 360, 3, 28, 28)
    assert batch["video_frame_mask"].sum(1).tolist() == [360, 360]
    # Whisper: one 3000-frame log-mel per 30 s chunk, concatenated; the WAV gives exactly 6 full chunks
    features, mask = batch["input_features"], batch["input_features_mask"]
    assert features.shape[:2] == (2, 80) and features.shape[-1] % 3000 == 0
    assert int(mask[0].sum()) == 6 * 3000 and not mask[0, 6 * 3000 :].any()
    wav_only = processor(text="What beeps?", videos=clip.path, audio=wav)
    assert wav_only["input_features"].shape == (1, 80, 6 * 3000)
    assert wav_only["input_features_mask"].all()
    assert torch.equal(wav_only["input_features"][0], features[0, :, : 6 * 3000])
    assert int(mask[1].sum()) == math.ceil(aac_samples / 160)


# -- bad inputs ------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def bad_files(short_clip, tmp_path_factory):
    folder = tmp_path_factory.mktemp("bad")
    data = Path(short_clip.path).read_bytes()
    truncated = folder / "truncated.mp4"
    truncated.write_bytes(data[: len(data) // 2])  # the moov index is at the end: cut off
    text = folder / "notes.mp4"
    text.write_text("this is a text file, not a video\n")
    nan_wav = folder / "nan.wav"
    wave = make_tone(440.0, 1.0)
    wave[1000] = np.nan
    sf.write(str(nan_wav), wave, SR, subtype="FLOAT")  # a float WAV can hold NaN
    return {"truncated": truncated, "text": text, "nan_wav": nan_wav}


def _with(value, index, tone):
    wave = tone.copy()
    wave[index] = value
    return wave


# id -> (processor kwargs built from (short clip path, bad files, a 1 s tone), exception type, regex of the message)
BAD_CASES = {
    "truncated_mp4": (lambda short, bad, tone: dict(text=["a", "b"], videos=[short, bad["truncated"]]),
                      MediaDecodeError, "truncated.mp4"),
    "text_file_named_mp4": (lambda short, bad, tone: dict(text=["a", "b"], videos=[short, bad["text"]]),
                            MediaDecodeError, "notes.mp4"),
    "text_file_as_audio": (
        lambda short, bad, tone: dict(text=["a", "b"], videos=[short, None], audio=[None, bad["text"]]),
        MediaDecodeError, "notes.mp4"),
    "empty_array_audio": (lambda short, bad, tone: dict(text="a", audio=np.zeros(0, np.float32), sampling_rate=SR),
                          ValueError, r"(?i)waveform.*empty"),
    "empty_array_audio_in_batch": (
        lambda short, bad, tone: dict(text=["a", "b"], audio=[tone, np.zeros(0, np.float32)], sampling_rate=SR),
        ValueError, r"(?i)waveform.*empty"),
    "nan_audio": (
        lambda short, bad, tone: dict(text=["a", "b"], audio=[tone, _with(np.nan, 123, tone)], sampling_rate=SR),
        ValueError, r"Sample 1.*NaN"),
    "inf_audio_with_video": (
        lambda short, bad, tone: dict(text=["a", "b"], videos=[short, short], audio=[None, _with(np.inf, -1, tone)],
                                      sampling_rate=SR),
        ValueError, r"Sample 1.*infinite"),
    "nan_wav_file": (lambda short, bad, tone: dict(text=["a", "b"], videos=[short, None], audio=[None, bad["nan_wav"]]),
                     ValueError, r"Sample 1.*nan\.wav.*NaN"),
    "two_placeholders": (lambda short, bad, tone: dict(text=["<AV> a", "<AV> b <AV>"], videos=[short, short]),
                         ValueError, r"Prompt 1 .*'<AV>' 2 times"),
    "more_videos_than_prompts": (lambda short, bad, tone: dict(text=["a", "b"], videos=[short, short, short]),
                                 ValueError, r"`videos` has 3 entries but there are 2 prompts"),
    "fewer_videos_than_prompts": (lambda short, bad, tone: dict(text=["a", "b", "c"], videos=[short, short]),
                                  ValueError, r"`videos` has 2 entries but there are 3 prompts"),
    "two_videos_one_prompt": (lambda short, bad, tone: dict(text=["a"], videos=[short, short]),
                              ValueError, r"`videos` has 2 entries but there are 1 prompts"),
    "audio_list_mismatch": (lambda short, bad, tone: dict(text=["a", "b"], audio=[tone], sampling_rate=SR),
                            ValueError, r"`audio` has 1 entries but there are 2 prompts"),
}


@pytest.mark.parametrize("case", list(BAD_CASES))
def test_bad_inputs_raise_value_errors_naming_the_input(processor, short_clip, bad_files, case):
    build, error, pattern = BAD_CASES[case]
    kwargs = build(short_clip.path, bad_files, make_tone(440.0, 1.0))
    vocab_before = len(processor.tokenizer)
    result = None
    with pytest.raises(error, match=pattern) as info:
        result = processor(**kwargs)
    assert isinstance(info.value, ValueError)
    assert result is None  # nothing returned: no partial batch with the bad sample dropped
    # the processor is unchanged and still works
    assert len(processor.tokenizer) == vocab_before
    good = processor(text="What beeps?", videos=short_clip.path)
    assert (good["input_ids"] == processor.audio_visual_token_id).sum() == 30


def test_in_memory_media_errors_name_the_sample(processor):
    with pytest.raises(ValueError, match="Sample 1"):
        processor(text=["a", "b"], audio=[make_tone(440.0, 1.0), np.zeros(0, np.float32)], sampling_rate=SR)


def test_a_one_video_list_of_frames_arrays_is_one_video(processor):
    frames = make_frames(4, 32, 32)
    as_list = processor(text=["a"], videos=[frames])
    bare = processor(text="a", videos=frames)
    for key in bare:
        assert torch.equal(as_list[key], bare[key]), key


# -- the prompt template ---------------------------------------------------------------------------------------------


def test_prompt_without_placeholder_is_wrapped_in_the_official_template(processor, short_clip):
    question = "What beeps?"
    assert DEFAULT_PROMPT_TEMPLATE.format(placeholder="<AV>", question=question) == (
        "USER: <Img><AV></Img> What beeps?\nASSISTANT:"
    )
    batch = processor(text=question, videos=short_clip.path)
    ids, positions = av_positions(batch, processor)
    tokenizer = processor.tokenizer
    assert ids[0] == tokenizer.bos_token_id
    assert len(positions) == 30 and positions == list(range(positions[0], positions[-1] + 1))
    before, after = ids[1 : positions[0]], ids[positions[-1] + 1 :]
    # the text around the placeholder is tokenised piece by piece (as the official code does), so each piece decodes
    # back to its own text ...
    assert tokenizer.decode(before) == "USER: <Img>"
    assert tokenizer.decode(after) == "</Img> What beeps?\nASSISTANT:"
    assert before == tokenizer("USER: <Img>", add_special_tokens=False)["input_ids"]
    assert after == tokenizer("</Img> What beeps?\nASSISTANT:", add_special_tokens=False)["input_ids"]
    # ... and all non-placeholder ids together decode to the template (SentencePiece's dummy prefix of the second
    # piece shows as one space where the placeholder run was)
    rest = [x for x in ids if x != processor.audio_visual_token_id]
    assert tokenizer.decode(rest, skip_special_tokens=True) == "USER: <Img> </Img> What beeps?\nASSISTANT:"
    # the visual Q-Former gets the bare question
    assert processor.qformer_tokenizer.decode(batch["qformer_input_ids"][0], skip_special_tokens=True) == "what beeps?"

    # a prompt written with the template is used as written and gives the same ids
    written = processor(text="USER: <Img><AV></Img> What beeps?\nASSISTANT:", videos=short_clip.path)
    assert torch.equal(written["input_ids"], batch["input_ids"])
    assert torch.equal(written["qformer_input_ids"], batch["qformer_input_ids"])


def test_prompt_without_media_uses_the_text_only_template(processor):
    batch = processor(text="Say hello.")
    ids = batch["input_ids"][0].tolist()
    assert processor.audio_visual_token_id not in ids
    assert processor.tokenizer.decode(ids, skip_special_tokens=True) == "USER: Say hello.\nASSISTANT:"
    assert "pixel_values_videos" not in batch and "input_features" not in batch
