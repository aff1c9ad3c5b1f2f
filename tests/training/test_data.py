"""The training data format, its loader and the lazy-decoding collator (mixed unpaired training, modality
augmentation, multi-turn)."""

from __future__ import annotations

import json

import pytest
import torch




from transformers_av.presets.tiny import tiny_favor_config  # noqa: E402
from transformers_av.synthetic.media import make_av_clip, make_tone, write_wav  # noqa: E402
from transformers_av.presets.tiny import tiny_processor  # noqa: E402
from transformers_av.training.data import FavorDataCollator, load_av_dataset  # noqa: E402

AV = 512  # the placeholder id of the tiny tokenizer


@pytest.fixture(scope="module")
def processor():
    return tiny_processor(tiny_favor_config("video_salmonn", image_size=28))


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    """Clips of different lengths (2 s and 4 s), so each sample's video and audio lengths identify their row."""
    root = tmp_path_factory.mktemp("media")
    make_av_clip(root / "short.mp4", seconds=2.0, fps=8, beep_at=0.5, size=(32, 32), colors=["red", "blue"])
    make_av_clip(root / "long.mp4", seconds=4.0, fps=8, beep_at=3.0, size=(32, 32), seed=1)
    write_wav(root / "tone3s.wav", make_tone(440.0, 3.0), 16000)
    return root


def _write_jsonl(path, rows):
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def _answer_ids(processor, answer):
    return processor.tokenizer(answer + processor.tokenizer.eos_token, add_special_tokens=False)["input_ids"]


def _audio_seconds(batch):
    """Seconds of audio per sample (100 Whisper frames a second; AAC adds a few ms to a sound track)."""
    return [round(n / 100) for n in batch["input_features_mask"].sum(1).tolist()]


def _labels_of(batch, i):
    labels = batch["labels"][i]
    return labels[labels != -100].tolist()


# -- loading and validation ----------------------------------------------------------------------------------------------


def test_load_jsonl_resolves_paths_against_the_file_folder(tmp_path):
    rows = [
        {"video": "a.mp4", "prompt": "What?", "answer": "That.", "extra": 1},
        {"audio": "/abs/b.wav", "image": "img/b.png", "prompt": "Who?", "answer": "Him.", "extra": 2},
        {"video": "c.mp4", "conversations": [
            {"from": "human", "value": "<video>\nFirst?"}, {"from": "gpt", "value": "One."},
            {"role": "user", "content": "Then?"}, {"role": "assistant", "content": "Two."}]},
    ]
    dataset = load_av_dataset(_write_jsonl(tmp_path / "train.jsonl", rows))
    assert len(dataset) == 3
    assert {"video", "audio", "image", "prompt", "answer", "conversations", "extra"} <= set(dataset.column_names)
    assert dataset[0]["video"] == str(tmp_path / "a.mp4")
    assert dataset[1]["audio"] == "/abs/b.wav" and dataset[1]["image"] == str(tmp_path / "img" / "b.png")
    assert dataset[1]["video"] is None and dataset[0]["conversations"] is None
    assert dataset[2]["conversations"][0] == {"role": "user", "content": "<video>\nFirst?"}
    assert dataset[2]["conversations"][3] == {"role": "assistant", "content": "Two."}
    assert dataset[2]["prompt"] is None
    # an explicit media_root wins; a datasets table and a list of rows are accepted too
    other = load_av_dataset(tmp_path / "train.jsonl", media_root="/data")
    assert other[0]["video"] == "/data/a.mp4"
    import datasets

    table = datasets.Dataset.from_list([{"video": "x.mp4", "prompt": "Q", "answer": "A"}])
    assert load_av_dataset(table)[0]["video"] == "x.mp4"
    assert load_av_dataset(datasets.DatasetDict({"validation": table}), split="validation")[0]["answer"] == "A"
    assert load_av_dataset([{"prompt": "Q", "answer": "A"}], media_root="/m")[0]["video"] is None


@pytest.mark.parametrize(
    "row, message",
    [
        ({"video": "a.mp4", "answer": "x"}, "line 2 .*field 'prompt' is missing"),
        ({"video": "a.mp4", "prompt": "q", "answer": ""}, "line 2 .*field 'answer' must be a non-empty string"),
        ({"video": 3, "prompt": "q", "answer": "a"}, "line 2 .*field 'video' must be a path"),
        ({"video": "a.mp4", "image": "b.png", "prompt": "q", "answer": "a"}, "line 2 .*'video' and 'image'"),
        ({"video": "a.mp4", "conversations": [{"from": "human", "value": "q"}]},
         "line 2 .*'conversations' must end with an assistant turn"),
        ({"video": "a.mp4", "conversations": [{"from": "gpt", "value": "a"}]},
         r"line 2 .*'conversations\[0\]' is a 'assistant' turn"),
        ({"video": "a.mp4", "conversations": [{"from": "robot", "value": "q"}]}, r"conversations\[0\]' has role 'robot'"),
        ({"video": "a.mp4", "conversations": [{"from": "human"}]}, r"conversations\[0\]' needs a non-empty string"),
        ({"video": "a.mp4", "prompt": "q", "answer": "a", "conversations": [
            {"from": "human", "value": "q"}, {"from": "gpt", "value": "a"}]}, "field 'prompt' cannot be combined"),
    ],
)
def test_validation_errors_name_the_row_and_field(tmp_path, row, message):
    path = _write_jsonl(tmp_path / "bad.jsonl", [{"prompt": "fine", "answer": "fine"}, row])
    with pytest.raises(ValueError, match=message):
        load_av_dataset(path)


def test_invalid_json_and_empty_files_are_reported(tmp_path):
    path = tmp_path / "broken.jsonl"
    path.write_text('{"prompt": "q", "answer": "a"}\n{"prompt": \n')
    with pytest.raises(ValueError, match="line 2: not valid JSON"):
        load_av_dataset(path)
    (tmp_path / "empty.jsonl").write_text("\n")
    with pytest.raises(ValueError, match="no rows"):
        load_av_dataset(tmp_path / "empty.jsonl")
    with pytest.raises(FileNotFoundError):
        load_av_dataset(tmp_path / "missing.jsonl")


# -- the collator ----------------------------------------------------------------------------------------------------------


def test_collator_shapes_and_labels(processor, media):
    dataset = load_av_dataset(
        [
            {"video": "short.mp4", "prompt": "What colour is it?", "answer": "red"},
            {"video": "long.mp4", "audio": "tone3s.wav", "prompt": "What do you hear?", "answer": "a tone"},
        ],
        media_root=media,
    )
    batch = FavorDataCollator(processor)(list(dataset))
    assert batch["input_ids"].shape == batch["labels"].shape == batch["attention_mask"].shape
    assert batch["pixel_values_videos"].shape[:2] == (2, 8)  # 2 fps: 4 and 8 frames
    assert batch["video_frame_mask"].sum(1).tolist() == [4, 8]
    # the first sample hears its own sound track (2 s), the second its separate 3 s audio
    assert _audio_seconds(batch) == [2, 3]
    assert batch["modality_mask"].tolist() == [[1.0, 1.0], [1.0, 1.0]]
    for i, answer in enumerate(["red", "a tone"]):
        ids = _answer_ids(processor, answer)
        length = int(batch["attention_mask"][i].sum())
        assert batch["attention_mask"][i, :length].all()  # right padding
        assert _labels_of(batch, i) == ids
        assert batch["labels"][i, length - len(ids) : length].tolist() == ids  # the answer ends the sample, eos last
        assert batch["labels"][i, length - 1] == processor.tokenizer.eos_token_id
        assert (batch["labels"][i, : length - len(ids)] == -100).all()
        assert (batch["input_ids"][i] == AV).sum() > 0
    # left padding, as for generation, keeps the answers at the end
    left = FavorDataCollator(processor, padding_side="left")(list(dataset))
    assert left["labels"][0, -len(_answer_ids(processor, "red")) :].tolist() == _answer_ids(processor, "red")


def test_collator_decodes_lazily(processor, media, tmp_path):
    """Nothing is opened before __call__: the clip of the row is written only after the collator (and dataset)."""
    dataset = load_av_dataset([{"video": "later.mp4", "prompt": "Q?", "answer": "yes"}], media_root=tmp_path)
    collator = FavorDataCollator(processor, media_root=tmp_path)
    assert not (tmp_path / "later.mp4").exists()
    make_av_clip(tmp_path / "later.mp4", seconds=1.0, fps=8, size=(32, 32))
    batch = collator(list(dataset))
    assert batch["video_frame_mask"].sum().item() == 2
    # the collator's media_root resolves rows that kept relative paths
    raw = [{"video": "later.mp4", "prompt": "Q?", "answer": "yes"}]
    assert collator(raw)["video_frame_mask"].sum().item() == 2


def test_collator_explains_removed_columns(processor):
    with pytest.raises(ValueError, match="remove_unused_columns=False"):
        FavorDataCollator(processor)([{"input_ids": [1, 2]}])


def test_multi_turn_trains_the_final_answer(processor, media):
    conversation = [
        {"from": "human", "value": "<video>\nWhat is first?"}, {"from": "gpt", "value": "red"},
        {"from": "human", "value": "And then?"}, {"from": "gpt", "value": "blue"},
    ]
    dataset = load_av_dataset([{"video": "short.mp4", "conversations": conversation}], media_root=media)
    collator = FavorDataCollator(processor)
    batch = collator(list(dataset))
    assert _labels_of(batch, 0) == _answer_ids(processor, "blue")
    tokens = batch["input_ids"][0][batch["input_ids"][0] != AV]
    text = processor.tokenizer.decode(tokens)
    assert "What is first?" in text and "red" in text and "And then?" in text and "<video>" not in text
    # the prompt is the chat template's rendering of the turns, with the media at the start of the first turn
    expected = "USER: <Img><AV></Img> What is first?\nASSISTANT: red</s>USER: And then?\nASSISTANT:"
    assert collator._sample(dataset[0]).text == expected
    assert collator._sample(dataset[0]).qformer_text == "And then?"
    assert (batch["input_ids"][0] == AV).sum() > 0
    # text-only conversations work as well
    text_only = load_av_dataset([{"conversations": conversation}])
    assert _labels_of(collator(list(text_only)), 0) == _answer_ids(processor, "blue")


def test_mixed_unpaired_pairs_video_of_one_row_with_audio_of_another(processor, media):
    rows = [
        {"video": "short.mp4", "prompt": "What is shown?", "answer": "red then blue"},
        {"video": "long.mp4", "prompt": "What is heard?", "answer": "a beep"},
    ]
    dataset = load_av_dataset(rows, media_root=media)
    paired = FavorDataCollator(processor)(list(dataset))
    assert paired["video_frame_mask"].sum(1).tolist() == [4, 8]
    assert _audio_seconds(paired) == [2, 4]

    collator = FavorDataCollator(processor, mixed_unpaired_ratio=1.0, seed=3)
    for _ in range(2):  # the pairing is redrawn per call; with two rows the partner is forced
        batch = collator(list(dataset))
        # video of its own row (4 / 8 frames), audio (the sound track) of the other row (4 s / 2 s)
        assert batch["video_frame_mask"].sum(1).tolist() == [4, 8]
        assert _audio_seconds(batch) == [4, 2]
        assert batch["modality_mask"].tolist() == [[1.0, 1.0], [1.0, 1.0]]
        assert _labels_of(batch, 0) == _answer_ids(processor, "red then blue a beep")
        assert _labels_of(batch, 1) == _answer_ids(processor, "a beep red then blue")
        prompt0 = processor.tokenizer.decode(batch["input_ids"][0][batch["input_ids"][0] != AV])
        assert "What is shown? What is heard?" in prompt0
    # a separate audio file is the audio taken from a row
    with_audio = load_av_dataset(
        [rows[0], {"video": "long.mp4", "audio": "tone3s.wav", "prompt": "What is heard?", "answer": "a tone"}],
        media_root=media,
    )
    batch = collator(list(with_audio))
    assert _audio_seconds(batch) == [3, 2]
    # ratio 0 keeps every sample paired; a single row stays paired
    assert _audio_seconds(FavorDataCollator(processor, mixed_unpaired_ratio=0.0)(list(dataset))) == [2, 4]
    assert _audio_seconds(collator([dataset[0]])) == [2]


def test_mixed_unpaired_ratio_is_a_fraction(processor, media):
    collator = FavorDataCollator(processor, mixed_unpaired_ratio=0.5, seed=0, media_root=media)
    unpaired = 0
    for round in range(3):  # three different batches: the draws are a function of the seed and the batch content
        rows = [{"video": name, "prompt": f"Q{i} ({round})", "answer": f"A{i}"}
                for i, name in enumerate(["short.mp4", "long.mp4"] * 4)]
        batch = collator(rows)
        for i in range(len(rows)):
            unpaired += len(_labels_of(batch, i)) > len(_answer_ids(processor, f"A{i}"))
    assert 4 <= unpaired <= 20  # about half of 24
    with pytest.raises(ValueError, match="mixed_unpaired_ratio"):
        FavorDataCollator(processor, mixed_unpaired_ratio=1.5)


def test_modality_augmentation_gives_three_views_per_row(processor, media):
    rows = [
        {"video": "short.mp4", "prompt": "What is shown?", "answer": "red"},
        {"video": "long.mp4", "prompt": "What is heard?", "answer": "a beep"},
    ]
    batch = FavorDataCollator(processor, modality_augmentation=True, media_root=media)(rows)
    assert batch["input_ids"].shape[0] == 6
    assert batch["modality_mask"].tolist() == [[1, 0], [0, 1], [1, 1]] * 2
    for i in range(6):
        assert _labels_of(batch, i) == _answer_ids(processor, ["red", "a beep"][i // 3])
    # the three views share their media and prompt; only the mask differs
    for key in ("input_ids", "pixel_values_videos", "input_features", "audio_input_features"):
        assert torch.equal(batch[key][0], batch[key][2]) and torch.equal(batch[key][3], batch[key][5])
    # a row with one modality (audio only) is kept once
    single = FavorDataCollator(processor, modality_augmentation=True, media_root=media)(
        [{"audio": "tone3s.wav", "prompt": "Q", "answer": "A"}, rows[0]]
    )
    assert single["modality_mask"].tolist() == [[0, 1], [1, 0], [0, 1], [1, 1]]


def test_augmentation_after_unpairing(processor, media):
    rows = [
        {"video": "short.mp4", "prompt": "V?", "answer": "v"},
        {"video": "long.mp4", "prompt": "A?", "answer": "a"},
    ]
    batch = FavorDataCollator(processor, mixed_unpaired_ratio=1.0, modality_augmentation=True, media_root=media)(rows)
    assert batch["input_ids"].shape[0] == 6
    assert _audio_seconds(batch) == [4] * 3 + [2] * 3
    assert all(_labels_of(batch, i) == _answer_ids(processor, "v a") for i in range(3))


def test_trainer_feeds_the_collator_raw_rows(processor, media, tmp_path):
    """With remove_unused_columns=False the Trainer hands the string columns to the collator."""
    from transformers import Trainer, TrainingArguments

    from transformers_av.models.favor.modeling_favor import FavorForConditionalGeneration

    config = tiny_favor_config("video_salmonn", image_size=28)
    model = FavorForConditionalGeneration(config)
    model.freeze_encoders()
    dataset = load_av_dataset(
        [{"video": "short.mp4", "prompt": "Q?", "answer": "red"}, {"video": "long.mp4", "prompt": "Q?", "answer": "blue"}],
        media_root=media,
    )
    args = TrainingArguments(
        output_dir=str(tmp_path / "out"), per_device_train_batch_size=2, max_steps=1, report_to=[], use_cpu=True,
        save_strategy="no", remove_unused_columns=False, disable_tqdm=True,
    )
    trainer = Trainer(model=model, args=args, train_dataset=dataset, data_collator=FavorDataCollator(processor))
    result = trainer.train()
    assert torch.isfinite(torch.tensor(result.training_loss))


def test_favor_trainer_keeps_the_raw_columns_without_being_told(processor, media, tmp_path):
    """FavorTrainer with default TrainingArguments (remove_unused_columns=True): the rows still reach the collator."""
    from transformers import TrainingArguments

    from transformers_av.models.favor.modeling_favor import FavorForConditionalGeneration
    from transformers_av.training import FavorTrainer

    model = FavorForConditionalGeneration(tiny_favor_config("video_salmonn", image_size=28))
    model.freeze_encoders()
    dataset = load_av_dataset([{"video": "short.mp4", "prompt": "Q?", "answer": "red"}], media_root=media)
    args = TrainingArguments(output_dir=str(tmp_path / "out"), per_device_train_batch_size=1, max_steps=1,
                             report_to=[], use_cpu=True, save_strategy="no", disable_tqdm=True)
    assert args.remove_unused_columns
    seen = []

    def collate(rows):
        seen.append(sorted(rows[0]))
        return FavorDataCollator(processor)(rows)

    trainer = FavorTrainer(model=model, args=args, train_dataset=dataset, data_collator=collate)
    trainer.train()
    assert not args.remove_unused_columns
    assert {"video", "prompt", "answer"} <= set(seen[0])
