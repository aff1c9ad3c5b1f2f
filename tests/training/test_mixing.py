"""The recipes' row mixing over seeded epochs: video-SALMONN's mixed training as the official data code
(bytedance/SALMONN, branch videosalmonn, datasets/sft_dataset.py) writes it, and the Audio-Visual LLM's modality mix.

No media are opened: the rows name files that do not exist, and the one probe (a video's sound track) is given."""

from __future__ import annotations

import numpy as np
import pytest

from transformers_av.training.data import load_av_dataset
from transformers_av.training.mixing import (
    AUDIO_VIDEO_MATCHING_QUESTIONS,
    VIDEO_SALMONN_MIXING,
    EpochSampler,
    MixedTrainingData,
    MixingRules,
    mix_row,
)

SILENT = "silent"  # videos whose name holds this have no sound track (the probe below)


def probe(path: str) -> bool:
    return SILENT not in path


def rows(video_only=40, images=40, paired=40, audio=20):
    """A dataset of each kind of row, numbered so that every prompt and answer names its row."""
    table = []
    table += [{"video": f"{SILENT}{i}.mp4", "prompt": f"What is shown in V{i}?", "answer": f"Shown V{i}."}
              for i in range(video_only)]
    table += [{"image": f"img{i}.png", "prompt": f"What is in I{i}?", "answer": f"Pictured I{i}."} for i in range(images)]
    table += [{"video": f"av{i}.mp4", "prompt": f"What happens in P{i}?", "answer": f"Happens P{i}."}
              for i in range(paired)]
    table += [{"audio": f"a{i}.wav", "prompt": f"What is heard in A{i}?", "answer": f"Heard A{i}."} for i in range(audio)]
    return load_av_dataset(table)


def epoch(data: MixedTrainingData, number: int):
    sampler = data.sampler()
    sampler.set_epoch(number)
    return [data[key] for key in sampler]


def test_official_values():
    assert VIDEO_SALMONN_MIXING == MixingRules(video_audio_ratio=0.2, image_audio_ratio=1.0, image_both_tasks_ratio=0.5,
                                               av_matching_ratio=0.1, av_mismatch_ratio=0.5)
    assert AUDIO_VIDEO_MATCHING_QUESTIONS == ("Is the audio compatible with the video?",
                                              "Does the audio come from the same source as the video?",
                                              "Is the audio related to the video?")


def test_each_rule_writes_the_official_prompt_and_answer():
    video = {"video": "v.mp4", "audio": None, "image": None, "prompt": "What Is Shown?", "answer": "A Red Square.",
             "conversations": None}
    partner = {"video": None, "audio": "dog.wav", "image": None, "prompt": "What is heard?", "answer": "A Dog Barks.",
               "conversations": None}
    seen = set()
    for seed in range(40):
        mixed = mix_row(video, "visual", MixingRules(video_audio_ratio=1.0), np.random.default_rng(seed),
                        lambda: partner)
        assert (mixed["video"], mixed["audio"], mixed["modality"]) == ("v.mp4", "dog.wav", "audio_visual")
        seen.add((mixed["prompt"], mixed["answer"]))
    # "In the video, " + question.lower(); random order; ", and, " with the second task lower-cased
    assert seen == {
        ("What is heard?, and, in the video, what is shown?", "A Dog Barks., and, a red square."),
        ("In the video, what is shown?, and, what is heard?", "A Red Square., and, a dog barks."),
    }
    image = {**video, "video": None, "image": "i.png"}
    seen = set()
    for seed in range(80):
        mixed = mix_row(image, "visual", MixingRules(image_audio_ratio=1.0), np.random.default_rng(seed),
                        lambda: partner)
        assert (mixed["image"], mixed["audio"], mixed["modality"]) == ("i.png", "dog.wav", "audio_visual")
        seen.add((mixed["prompt"], mixed["answer"]))
    # one of the two tasks alone (the picture's prefixed), or both joined with ", and "
    assert seen == {
        ("What is heard?", "A Dog Barks."),
        ("In the image, what is shown?", "A Red Square."),
        ("What is heard?, and in the image, what is shown?", "A Dog Barks., and a red square."),
        ("In the image, what is shown?, and what is heard?", "A Red Square., and a dog barks."),
    }
    paired = {**video, "video": "av.mp4"}
    outcomes = set()
    for seed in range(60):
        mixed = mix_row(paired, "audio_visual", MixingRules(av_matching_ratio=1.0), np.random.default_rng(seed),
                        lambda: partner)
        assert mixed["prompt"] in AUDIO_VIDEO_MATCHING_QUESTIONS
        outcomes.add((mixed["audio"], mixed["answer"]))
    assert outcomes == {(None, "Yes."), ("dog.wav", "No.")}  # its own sound track, or another row's audio
    # rows the rules do not touch: audio-only, multi-turn, and everything when the rules are off
    assert mix_row(partner, "audio", VIDEO_SALMONN_MIXING, np.random.default_rng(0), lambda: partner) == partner
    multi = {**video, "prompt": None, "answer": None, "conversations": [{"role": "user", "content": "q"},
                                                                        {"role": "assistant", "content": "a"}]}
    assert mix_row(multi, "visual", MixingRules(video_audio_ratio=1.0), np.random.default_rng(0), lambda: partner) == multi
    assert mix_row(video, "visual", MixingRules(), np.random.default_rng(0), lambda: partner) == video


def test_an_epoch_has_the_official_ratios():
    data = MixedTrainingData(rows(video_only=400, images=400, paired=400, audio=100), rules=VIDEO_SALMONN_MIXING,
                             seed=0, has_sound_track=probe)
    samples = epoch(data, 0)
    assert len(samples) == 1300
    video_only = [s for s in samples if s["video"] and SILENT in s["video"]]
    images = [s for s in samples if s["image"]]
    paired = [s for s in samples if s["video"] and SILENT not in s["video"]]
    joined_videos = [s for s in video_only if s["audio"] is not None]
    # binomial bounds, 4 standard deviations (the draws are fixed by the seed: these are the numbers of epoch 0)
    assert abs(len(joined_videos) / 400 - 0.2) < 4 * np.sqrt(0.2 * 0.8 / 400)
    assert all(", and, " in s["prompt"] and "in the video, " in s["prompt"].lower() for s in joined_videos)
    assert all(s["modality"] == "visual" and s["prompt"].startswith("What is shown") for s in video_only if not s["audio"])
    assert all(s["audio"] is not None for s in images)  # every image row hears a random audio row
    both = [s for s in images if ", and " in s["prompt"]]
    assert abs(len(both) / 400 - 0.5) < 4 * np.sqrt(0.25 / 400)
    matching = [s for s in paired if s["prompt"] in AUDIO_VIDEO_MATCHING_QUESTIONS]
    assert abs(len(matching) / 400 - 0.1) < 4 * np.sqrt(0.1 * 0.9 / 400)
    mismatched = [s for s in matching if s["answer"] == "No."]
    assert all(s["audio"].endswith(".wav") for s in mismatched)
    assert all(s["audio"] is None for s in matching if s["answer"] == "Yes.")
    assert 0 < len(mismatched) < len(matching)
    # the random audio comes from the whole dataset: epoch 0 draws nearly every one of the 100 audio rows
    partners = {s["audio"] for s in images}
    assert len(partners) > 90
    # audio-only rows train as they are
    assert sorted(s["prompt"] for s in samples if s["modality"] == "audio") == sorted(
        f"What is heard in A{i}?" for i in range(100))


def test_draws_are_a_function_of_seed_epoch_and_position():
    """What a resumed run (which skips the batches before its checkpoint), another worker or another process sees
    is what the uninterrupted run saw; another epoch or seed draws again."""
    table = rows()
    first = MixedTrainingData(table, rules=VIDEO_SALMONN_MIXING, seed=3, has_sound_track=probe)
    again = MixedTrainingData(table, rules=VIDEO_SALMONN_MIXING, seed=3, has_sound_track=probe)
    keys = list(first.sampler())
    assert keys[:3] == [(0, 0, keys[0][2]), (0, 1, keys[1][2]), (0, 2, keys[2][2])]
    assert [first[k] for k in keys] == [again[k] for k in keys]
    assert [again[k] for k in keys[70:]] == [first[k] for k in keys][70:]  # read from the middle: the same
    assert epoch(first, 1) != epoch(first, 0)
    assert epoch(MixedTrainingData(table, rules=VIDEO_SALMONN_MIXING, seed=4, has_sound_track=probe), 0) != epoch(first, 0)
    # an integer key reads the row unmixed (its modality resolved)
    assert first[0]["prompt"] == "What is shown in V0?" and first[0]["modality"] == "visual"


def test_modality_mix_sets_each_modality_share_of_an_epoch():
    """Shu et al. §3.2: visual-only, audio-only and audio-visual samples in the same batches, here resampled to the
    Table 10 proportions (130 : 45 : 85 thousand pairs) from data that holds them 1 : 1 : 1."""
    table = load_av_dataset(
        [{"video": f"{SILENT}{i}.mp4", "prompt": f"V{i}", "answer": "v"} for i in range(100)]
        + [{"audio": f"a{i}.wav", "prompt": f"A{i}", "answer": "a"} for i in range(100)]
        + [{"video": f"av{i}.mp4", "prompt": f"P{i}", "answer": "p"} for i in range(100)]
    )
    data = MixedTrainingData(table, modality_mix={"visual": 130, "audio": 45, "audio_visual": 85}, seed=0,
                             has_sound_track=probe)
    for number in (0, 1):
        samples = epoch(data, number)
        counts = {m: sum(s["modality"] == m for s in samples) for m in ("visual", "audio", "audio_visual")}
        # 300 x (130, 45, 85) / 260 = (150, 51.9, 98.1): largest remainder
        assert counts == {"visual": 150, "audio": 52, "audio_visual": 98}
        visual = [s["prompt"] for s in samples if s["modality"] == "visual"]
        assert len(set(visual)) == 100  # every visual row before any repeats
        audio = [s["prompt"] for s in samples if s["modality"] == "audio"]
        assert len(set(audio)) == 52  # fewer slots than rows: no repeats
        # the modalities are interleaved: every batch of 8 of the epoch mixes them
        kinds_per_batch = [len({s["modality"] for s in samples[i : i + 8]}) for i in range(0, 296, 8)]
        assert np.mean(kinds_per_batch) > 2.2
    # without a mix: each row once per epoch
    plain = MixedTrainingData(table, rules=VIDEO_SALMONN_MIXING, seed=0, has_sound_track=probe)
    assert sorted(plain.epoch_order(0)) == list(range(300))


def test_mixing_errors_name_what_is_missing():
    no_audio = load_av_dataset([{"video": f"{SILENT}.mp4", "prompt": "q", "answer": "a"}])
    with pytest.raises(ValueError, match="no single-turn audio-only row"):
        MixedTrainingData(no_audio, rules=VIDEO_SALMONN_MIXING, has_sound_track=probe)
    # matching alone needs no audio row (the official code skips it without audio files)
    MixedTrainingData(no_audio, rules=MixingRules(av_matching_ratio=0.1), has_sound_track=probe)
    with pytest.raises(ValueError, match=r"modality_mix asks for \['audio'\] but the data has no such row"):
        MixedTrainingData(no_audio, modality_mix={"visual": 1, "audio": 1}, has_sound_track=probe)
    with pytest.raises(ValueError, match="unknown group"):
        MixedTrainingData(no_audio, modality_mix={"video": 1}, has_sound_track=probe)
    with pytest.raises(ValueError, match="av_matching_ratio must be a probability"):
        MixingRules(av_matching_ratio=1.5)


def test_favor_trainer_reads_mixed_data_with_its_epoch_sampler(tmp_path):
    from transformers import TrainingArguments

    from transformers_av.models.favor.modeling_favor import FavorForConditionalGeneration
    from transformers_av.presets.tiny import tiny_favor_config
    from transformers_av.training import FavorTrainer

    data = MixedTrainingData(rows(8, 8, 8, 4), rules=VIDEO_SALMONN_MIXING, seed=1, has_sound_track=probe)
    args = TrainingArguments(output_dir=str(tmp_path), per_device_train_batch_size=4, report_to=[], use_cpu=True,
                             disable_tqdm=True, remove_unused_columns=False)
    trainer = FavorTrainer(model=FavorForConditionalGeneration(tiny_favor_config("favor", image_size=28)), args=args,
                           train_dataset=data, data_collator=lambda batch: batch)
    loader = trainer.get_train_dataloader()
    loader.set_epoch(1)  # what Trainer does at the start of each epoch
    batches = list(loader)
    assert sum(len(b) for b in batches) == len(data) == 28
    assert [row for batch in batches for row in batch] == epoch(data, 1)
    assert isinstance(trainer._get_train_sampler(), EpochSampler)


def test_processes_share_one_epoch_between_them():
    """Under `accelerate launch` each process reads its shard of the same batches (accelerate's BatchSamplerShard):
    the two shards together are the epoch, each sample once, with the same draws as one process."""
    from accelerate.data_loader import BatchSamplerShard
    from torch.utils.data import BatchSampler

    data = MixedTrainingData(rows(8, 8, 8, 4), rules=VIDEO_SALMONN_MIXING, seed=2, has_sound_track=probe)
    shards = []
    for rank in (0, 1):
        sampler = data.sampler()
        sampler.set_epoch(3)
        batches = BatchSamplerShard(BatchSampler(sampler, batch_size=2, drop_last=False), num_processes=2,
                                    process_index=rank)
        shards.append([key for batch in batches for key in batch])
    keys = [(3, position, index) for position, index in enumerate(data.epoch_order(3))]
    assert sorted(shards[0] + shards[1]) == sorted(keys)
    assert not set(shards[0]) & set(shards[1])
    one_process = dict(zip(keys, epoch(data, 3)))
    assert all(data[key] == one_process[key] for key in shards[0] + shards[1])
