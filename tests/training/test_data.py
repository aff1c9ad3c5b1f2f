"""The training data format (rows carry their modality), its loader and the lazy-decoding collators (a row's
modality honoured by FAVOR's modality mask and the Audio-Visual LLM's modality token, multi-turn)."""

from __future__ import annotations

import json

import pytest
import torch




from transformers_av.presets.tiny import tiny_favor_config  # noqa: E402
from transformers_av.synthetic.media import make_av_clip, make_frames, make_tone, write_video, write_wav  # noqa: E402
from transformers_av.presets.tiny import tiny_processor  # noqa: E402
from transformers_av.training.data import (  # noqa: E402
    AvLlmDataCollator,
    FavorDataCollator,
    declared_modality,
    load_av_dataset,
    row_modality,
)

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
    write_video(root / "mute.mp4", make_frames(16, 32, 32, colors=["green"]), 8)  # 2 s, no sound track
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
        ({"video": "a.mp4", "modality": "video", "prompt": "q", "answer": "a"},
         r"line 2 .*field 'modality' must be one of \['visual', 'audio', 'audio_visual'\], got 'video'"),
        ({"audio": "a.wav", "modality": "visual", "prompt": "q", "answer": "a"},
         "field 'modality' is 'visual' but the row gives no 'video' or 'image'"),
        ({"video": "a.mp4", "audio": "a.wav", "modality": "visual", "prompt": "q", "answer": "a"},
         "field 'modality' is 'visual' but the row gives an 'audio' file"),
        ({"image": "a.png", "modality": "audio", "prompt": "q", "answer": "a"},
         "field 'modality' is 'audio' but the row gives an 'image'"),
        ({"image": "a.png", "modality": "audio_visual", "prompt": "q", "answer": "a"},
         "field 'modality' is 'audio_visual' but the row gives no 'audio' or 'video' to hear"),
        ({"modality": "audio", "prompt": "q", "answer": "a"}, "is 'audio' but the row gives no 'audio' or 'video'"),
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


def test_every_row_has_a_modality(media):
    """A written modality is kept; otherwise the media decide: picture + audio file -> audio_visual, image -> visual,
    audio file -> audio, and a video alone is probed for a sound track (only by row_modality, never on loading)."""
    rows = [
        {"video": "short.mp4", "prompt": "q", "answer": "a"},
        {"video": "mute.mp4", "prompt": "q", "answer": "a"},
        {"video": "short.mp4", "modality": "visual", "prompt": "q", "answer": "a"},
        {"video": "short.mp4", "modality": "audio", "prompt": "q", "answer": "a"},
        {"image": "i.png", "audio": "tone3s.wav", "prompt": "q", "answer": "a"},
        {"image": "i.png", "prompt": "q", "answer": "a"},
        {"audio": "tone3s.wav", "prompt": "q", "answer": "a"},
        {"prompt": "q", "answer": "a"},
    ]
    dataset = load_av_dataset(rows, media_root=media)
    assert dataset["modality"] == [None, None, "visual", "audio", "audio_visual", "visual", "audio", None]
    assert [declared_modality(row) for row in dataset] == dataset["modality"]
    assert [row_modality(row) for row in dataset] == [
        "audio_visual", "visual", "visual", "audio", "audio_visual", "visual", "audio", None]
    probed = []
    row_modality(dataset[2], has_sound_track=probed.append)  # declared: nothing is opened
    assert probed == []


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


def test_favor_collator_trains_a_row_on_its_modality(processor, media):
    """video-SALMONN's official data code masks a video-only sample's audio ([1, 0]); an audio row of a video hears
    its sound track without its frames."""
    rows = [
        {"video": "short.mp4", "prompt": "Seen?", "answer": "red"},
        {"video": "short.mp4", "modality": "visual", "prompt": "Seen?", "answer": "red"},
        {"video": "long.mp4", "modality": "audio", "prompt": "Heard?", "answer": "a beep"},
    ]
    batch = FavorDataCollator(processor, media_root=media)(rows)
    assert batch["modality_mask"].tolist() == [[1.0, 1.0], [1.0, 0.0], [0.0, 1.0]]
    assert batch["video_frame_mask"].sum(1).tolist() == [4, 4, 0]  # 2 fps; the audio row has no frames
    assert _audio_seconds(batch) == [2, 2, 4]  # the audio row: the 4 s sound track of long.mp4
    assert torch.equal(batch["input_features"][0], batch["input_features"][1])  # loaded, then switched off
    assert [_labels_of(batch, i) for i in range(3)] == [_answer_ids(processor, a) for a in ("red", "red", "a beep")]


def test_av_llm_collator_writes_the_row_modality_as_its_token(media):
    from transformers_av.presets.tiny import tiny_av_llm_config, tiny_av_llm_processor

    processor = tiny_av_llm_processor(tiny_av_llm_config())
    tokens = {t: processor.tokenizer.convert_tokens_to_ids(t) for t in ("<VIS>", "<AUD>", "<AUD_VIS>")}
    rows = [
        {"video": "short.mp4", "modality": "visual", "prompt": "Which colour is on screen?", "answer": "red"},
        {"video": "long.mp4", "modality": "audio", "prompt": "What do you hear?", "answer": "a beep"},
        {"video": "long.mp4", "prompt": "What happens?", "answer": "a beep"},
        {"image": "i.png", "modality": "visual", "prompt": "<AUD> What?", "answer": "x"},
    ]
    collator = AvLlmDataCollator(processor, media_root=media)
    batch = collator(rows[:3])
    marked = [[name for name, token_id in tokens.items() if bool((ids == token_id).any())] for ids in batch["input_ids"]]
    assert marked == [["<VIS>"], ["<AUD>"], ["<AUD_VIS>"]]  # a video with sound and no field: audio-visual
    # only the media of the row's modality are loaded: no audio for the visual row, no frames for the audio row
    assert batch["audio_segment_mask"].any(-1).tolist() == [False, True, True]
    assert batch["video_frame_mask"].any(-1).tolist() == [True, False, True]
    # one row is one sample: nothing is copied
    assert batch["input_ids"].shape[0] == 3
    with pytest.raises(ValueError, match="a row of modality 'visual' has a prompt marked <AUD>"):
        collator([rows[3]])


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
