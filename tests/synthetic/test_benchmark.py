"""The synthetic audio-visual benchmark: every written clip is decoded back and its answer recomputed from the
decoded pixels and samples; splits are deterministic, balanced, disjoint and load in the training format."""

from __future__ import annotations

import json

import numpy as np
import pytest


from transformers_av.evaluation.scoring import exact_match  # noqa: E402
from transformers_av.media import load_audio, load_video  # noqa: E402
from transformers_av.synthetic.benchmark import (  # noqa: E402
    BENCHMARK_CLIP,
    COUNT_BEEP,
    DIGIT_TONES,
    FAMILIES,
    BenchmarkClipSettings,
    make_benchmark_clip,
    write_benchmark,
)
from transformers_av.synthetic.media import to_rgb  # noqa: E402
from transformers_av.synthetic.tasks import MATCH_TONES, SYNC_PALETTE  # noqa: E402

RATE = BENCHMARK_CLIP.sampling_rate


def nearest_colour(pixel: np.ndarray) -> str:
    """The palette colour closest to a decoded (lossy) pixel."""
    return min(SYNC_PALETTE, key=lambda name: float(np.abs(np.asarray(to_rgb(name)) - pixel).sum()))


def background_at(video, seconds: float) -> str:
    """The background colour on screen at `seconds` (a corner pixel: the moving square is 8 px of 32)."""
    frames = load_video(video, fps=BENCHMARK_CLIP.fps)
    index = int(np.searchsorted(frames.timestamps, seconds + 1e-6) - 1)
    corners = frames.frames[index][[0, 0, -1, -1], [0, -1, 0, -1]].astype(float)
    return nearest_colour(np.median(corners, axis=0))


def dominant_frequency(waveform: np.ndarray) -> float:
    spectrum = np.abs(np.fft.rfft(waveform * np.hanning(len(waveform))))
    return float(np.fft.rfftfreq(len(waveform), 1 / RATE)[spectrum.argmax()])


def loud(waveform: np.ndarray, start: float, end: float) -> bool:
    piece = waveform[int(start * RATE) : int(end * RATE)]
    return float(np.sqrt(np.mean(piece**2))) > 0.05  # a 0.3-amplitude sine has RMS 0.21; silence (+ codec) ~0


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    """Four clips of every family (one of each per split position), written once."""
    root = tmp_path_factory.mktemp("bench")
    return [make_benchmark_clip(root / f"{family}_{i}.mp4", family, seed=7, split="test", index=i)
            for family in FAMILIES for i in range(4)]


def test_every_answer_is_what_the_decoded_clip_shows_and_sounds(clips):
    for row in clips:
        audio = load_audio(row["video"], sampling_rate=RATE).waveform
        family = row["family"]
        if family == "speech":  # each 0.5 s slot's pitch is its digit
            recovered = [min(DIGIT_TONES, key=lambda d: abs(DIGIT_TONES[d] - dominant_frequency(
                audio[int((s + 0.1) * RATE) : int((s + 0.4) * RATE)]))) for s in row["digit_starts"]]
            assert " ".join(recovered) == row["answer"] == " ".join(row["digits"])
            assert all(2 * s == int(2 * s) for s in row["digit_starts"])  # on the 0.5 s frame grid
        elif family == "visual":
            assert {background_at(row["video"], t) for t in (0.1, 1.6, 3.6)} == {row["answer"]}
        elif family == "sync":  # the colour under the beep, and the clip shows other colours elsewhere
            beep_mid = row["beep_at"] + COUNT_BEEP[0] / 2
            assert loud(audio, beep_mid - 0.05, beep_mid + 0.05)
            assert background_at(row["video"], beep_mid) == row["answer"]
            assert len({background_at(row["video"], t + 0.5) for t in range(4)}) == 4
        elif family == "count":  # loud 0.5 s frames = beeps (never two in adjacent frames)
            frames = [loud(audio, 0.5 * i, 0.5 * (i + 1)) for i in range(8)]
            assert str(sum(frames)) == row["answer"] == str(row["count"])
            assert not any(a and b for a, b in zip(frames, frames[1:]))
        elif family == "match":
            pitch = dominant_frequency(audio[RATE : 2 * RATE])
            tone_of = min(MATCH_TONES, key=lambda name: abs(MATCH_TONES[name] - pitch))
            colour = background_at(row["video"], 2.0)
            assert (colour, tone_of) == (row["color"], row["tone_of"])
            assert row["answer"] == ("yes" if colour == tone_of else "no")
        # the answers are scoreable by the project's exact-match rule (each family's `rule`)
        assert FAMILIES[family].rule == "exact_match" and exact_match(f" {row['answer'].upper()}.", row["answer"])


def test_same_seed_same_clip_other_split_or_seed_another(tmp_path):
    first = make_benchmark_clip(tmp_path / "a.mp4", "speech", seed=3, split="test", index=5)
    again = make_benchmark_clip(tmp_path / "b.mp4", "speech", seed=3, split="test", index=5)
    assert {**first, "video": None} == {**again, "video": None}
    np.testing.assert_array_equal(load_audio(first["video"]).waveform, load_audio(again["video"]).waveform)
    # the frames are the same arrays; a lossy encoder may round two encodes differently (threads), so compare content
    assert [background_at(first["video"], t / 4) for t in range(16)] == [
        background_at(again["video"], t / 4) for t in range(16)]
    others = [make_benchmark_clip(tmp_path / f"{i}.mp4", "speech", seed=seed, split=split, index=5)
              for i, (seed, split) in enumerate([(3, "train"), (3, "demo"), (4, "test")])]
    assert all(other["digit_starts"] != first["digit_starts"] or other["digits"] != first["digits"] for other in others)


def test_write_benchmark_splits_balanced_disjoint_and_in_training_format(tmp_path):
    from transformers_av.training.data import load_av_dataset

    written = write_benchmark(tmp_path, seed=1, sizes={"train": 10, "test": 5})
    assert [row["family"] for row in written["train"]] == list(FAMILIES) * 2
    assert [row["family"] for row in written["test"]] == list(FAMILIES)
    on_disk = [json.loads(line) for line in (tmp_path / "test.jsonl").read_text().splitlines()]
    assert on_disk == written["test"]
    assert all((tmp_path / row["video"]).is_file() for rows in written.values() for row in rows)
    # clip i does not depend on how many clips are written
    smaller = write_benchmark(tmp_path / "small", seed=1, sizes={"test": 2})["test"]
    assert smaller == written["test"][:2]
    train_keys = {json.dumps({**row, "video": None}, sort_keys=True) for row in written["train"]}
    assert not train_keys & {json.dumps({**row, "video": None}, sort_keys=True) for row in written["test"]}
    dataset = load_av_dataset(tmp_path / "train.jsonl")
    assert dataset["answer"] == [row["answer"] for row in written["train"]]
    assert dataset["prompt"] == [FAMILIES[row["family"]].question for row in written["train"]]


def test_train_weights_over_represent_a_family_in_the_train_split_only(tmp_path):
    written = write_benchmark(tmp_path, seed=1, sizes={"train": 9, "test": 5}, families=["speech", "visual", "sync"],
                              train_weights={"speech": 3})
    assert [row["family"] for row in written["train"]] == ["speech"] * 3 + ["visual", "sync"] + ["speech"] * 3 + [
        "visual"]
    assert [row["family"] for row in written["test"]] == ["speech", "visual", "sync", "speech", "visual"]
    # a clip is its (seed, split, index, family): the weighted train split draws the same clip where the family agrees
    balanced = write_benchmark(tmp_path / "balanced", seed=1, sizes={"train": 1}, families=["speech"])["train"]
    assert balanced[0] == written["train"][0]


def test_shorter_clips_keep_every_family_answerable(tmp_path):
    row = make_benchmark_clip(tmp_path / "c.mp4", "count", seed=0, index=3, settings=BenchmarkClipSettings(seconds=2))
    assert 1 <= row["count"] <= 2 and load_video(row["video"]).duration == 2.0


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda p: make_benchmark_clip(p / "x.mp4", "smell"), r"family must be one of \['speech'"),
        (lambda p: make_benchmark_clip(p / "x.mp4", "visual", split="dev"), r"split must be one of"),
        (lambda p: make_benchmark_clip(p / "x.mp4", "visual", seed=-1), r"seed and index must be >= 0"),
        (lambda p: write_benchmark(p, sizes={"train": -1}), r"sizes\['train'\] must be >= 0"),
        (lambda p: write_benchmark(p, families=["visual", "taste"]), r"families must be a non-empty list"),
        (lambda p: write_benchmark(p, families=["visual"], train_weights={"speech": 2}),
         r"train_weights: 'speech' is not one of the families written"),
        (lambda p: write_benchmark(p, train_weights={"speech": 1.5}), r"train_weights\['speech'\] must be a whole"),
    ],
)
def test_bad_input_names_what_was_expected(tmp_path, call, message):
    with pytest.raises(ValueError, match=message):
        call(tmp_path)


def test_batched_answers_equal_one_by_one(tmp_path):
    """`answer_rows` left-pads a batch for generation: each row's answer is the one it gets alone."""
    import torch

    from transformers_av.presets import TINY_MODELS
    from transformers_av.synthetic.benchmark import answer_rows

    torch.manual_seed(0)
    model, processor = TINY_MODELS["tiny-video-salmonn-synthetic"].build()
    rows = write_benchmark(tmp_path, seed=5, sizes={"test": 3}, families=["speech", "visual", "match"])["test"]
    batched = answer_rows(model.eval(), processor, rows, media_root=tmp_path, batch_size=3, max_new_tokens=4)
    alone = answer_rows(model, processor, rows, media_root=tmp_path, batch_size=1, max_new_tokens=4)
    assert batched == alone and all(isinstance(answer, str) for answer in batched)
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        answer_rows(model, processor, rows, batch_size=0)


def test_av_llm_preset_sees_one_frame_a_second_and_hears_two_second_segments(tmp_path):
    """`tiny-av-llm-synthetic` (the ablation's Audio-Visual LLM): a 4 s clip gives 4 frames (the `sync` family's one
    colour per second) and two 2 s audio segments; the prompt's modality token picks what is loaded."""
    import torch

    from transformers_av.presets import TINY_MODELS

    row = write_benchmark(tmp_path, seed=5, sizes={"test": 1}, families=["sync"])["test"][0]
    model, processor = TINY_MODELS["tiny-av-llm-synthetic"].build()
    video = str(tmp_path / row["video"])
    both = processor(text=f"<AUD_VIS> {row['prompt']}", videos=video)
    assert tuple(both["pixel_values_videos"].shape) == (1, 4, 3, 28, 28) and both["video_frame_mask"].all()
    assert tuple(both["audio_segment_mask"].shape) == (1, 2) and both["audio_segment_mask"].all()
    heard = processor(text=f"<AUD> {row['prompt']}", videos=video)
    assert "pixel_values_videos" not in heard
    torch.testing.assert_close(heard["audio_input_features"], both["audio_input_features"], atol=0, rtol=0)
    seen = processor(text=f"<VIS> {row['prompt']}", videos=video)
    assert "audio_input_features" not in seen
    torch.testing.assert_close(seen["pixel_values_videos"], both["pixel_values_videos"], atol=0, rtol=0)
    # the frames are the clip's seconds: the `sync` answer's colour is on the frame of the beep's second
    assert len(set(map(tuple, seen["pixel_values_videos"][0].mean((-1, -2)).tolist()))) > 1
    assert model(**both).logits.shape[:2] == both["input_ids"].shape
