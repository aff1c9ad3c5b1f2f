"""Per-sample batching shared by every processor: one entry per prompt, errors that name the sample, the prompt
tokenised around its expanded placeholder, answers as the only labels, left/right padding."""

import numpy as np
import pytest
import torch

from transformers_av.models.common.processing_common import (
    describe,
    is_media_file,
    naming_the_sample,
    pad_token_rows,
    per_sample,
    prompt_token_ids,
    vicuna_chat_template,
    with_answer,
)
from transformers_av.presets.tiny import tiny_processor

PLACEHOLDER_ID = 512


@pytest.fixture(scope="module")
def tokenizer():
    return tiny_processor().tokenizer


def test_per_sample_single_items_lists_and_mismatches():
    assert per_sample("audio", None, 3) == [None, None, None]
    assert per_sample("videos", "a.mp4", 1) == ["a.mp4"]
    assert per_sample("videos", ["a.mp4", None], 2) == ["a.mp4", None]
    frames = [np.zeros((4, 4, 3), np.uint8)] * 2  # a list of frames is ONE video for one prompt
    assert len(per_sample("videos", frames, 1)) == 1 and per_sample("videos", frames, 1)[0] is frames
    video = np.zeros((2, 4, 4, 3), np.uint8)  # a list holding a (T, H, W, 3) array is a batch of one video
    assert per_sample("videos", [video], 1)[0] is video
    with pytest.raises(ValueError, match=r"`audio` has 1 entries but there are 2 prompts"):
        per_sample("audio", ["x.wav"], 2)
    with pytest.raises(ValueError, match=r"`videos` must be a list with one entry per prompt \(2 prompts\)"):
        per_sample("videos", "a.mp4", 2)


def test_errors_name_the_sample_once_and_keep_their_type():
    with pytest.raises(FileNotFoundError, match=r"^Sample 3: no such file$") as caught:
        with naming_the_sample(3):
            raise FileNotFoundError("no such file")
    assert isinstance(caught.value.__cause__, FileNotFoundError)
    with pytest.raises(ValueError, match=r"^Sample 1: bad$"):  # not renamed twice
        with naming_the_sample(2):
            with naming_the_sample(1):
                raise ValueError("bad")
    with pytest.raises(KeyError):  # only input errors are renamed
        with naming_the_sample(0):
            raise KeyError("x")


def test_describe_and_media_file_kinds():
    assert describe("clip.mp4") == "clip.mp4"
    assert describe(np.zeros((2, 3))) == "ndarray of shape (2, 3)"
    assert describe(3) == "int"
    assert is_media_file("a.wav") and is_media_file(b"\x00") and not is_media_file(np.zeros(3))


def test_prompt_is_bos_then_pieces_around_the_expanded_placeholder(tokenizer):
    ids = prompt_token_ids(tokenizer, "hello <AV> world", "<AV>", PLACEHOLDER_ID, 3)
    hello = tokenizer("hello ", add_special_tokens=False)["input_ids"]
    world = tokenizer(" world", add_special_tokens=False)["input_ids"]
    assert ids == [tokenizer.bos_token_id, *hello, PLACEHOLDER_ID, PLACEHOLDER_ID, PLACEHOLDER_ID, *world]


def test_the_answer_is_the_only_labelled_part_and_max_length_cuts_only_the_answer(tokenizer):
    ids = [1, 5, 6]
    full_ids, labels = with_answer(tokenizer, ids, "yes", None, 0)
    answer = tokenizer("yes" + tokenizer.eos_token, add_special_tokens=False)["input_ids"]
    assert full_ids == ids + answer and labels == [-100] * 3 + answer
    cut_ids, cut_labels = with_answer(tokenizer, ids, "yes", 4, 0)
    assert cut_ids == ids + answer[:1] and cut_labels == [-100] * 3 + answer[:1]
    with pytest.raises(ValueError, match=r"Sample 2: the prompt with its 7 media tokens needs 3 tokens, more than "
                                         r"max_length=2"):
        with_answer(tokenizer, ids, "yes", 2, 2, num_media_tokens=7)


@pytest.mark.parametrize("side", ["left", "right"])
def test_padding(side):
    batch = pad_token_rows([[1, 2, 3], [4]], [[-100, 2, 3], [-100]], pad_id=0, padding_side=side)
    if side == "left":
        assert batch["input_ids"].tolist() == [[1, 2, 3], [0, 0, 4]]
        assert batch["attention_mask"].tolist() == [[1, 1, 1], [0, 0, 1]]
        assert batch["labels"].tolist() == [[-100, 2, 3], [-100, -100, -100]]
    else:
        assert batch["input_ids"].tolist() == [[1, 2, 3], [4, 0, 0]]
        assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]
    assert all(t.dtype == torch.long for t in batch.values())
    with pytest.raises(ValueError, match="padding_side must be 'left' or 'right', got 'middle'"):
        pad_token_rows([[1]], [[1]], 0, "middle")


def test_vicuna_chat_template_renders_the_conversation_format():
    from jinja2 import Environment

    template = Environment().from_string(vicuna_chat_template("<M> "))
    messages = [
        {"role": "user", "content": [{"type": "video"}, {"type": "text", "text": "What beeps?"}]},
        {"role": "assistant", "content": "The phone."},
        {"role": "user", "content": "And then?"},
    ]
    assert template.render(messages=messages, add_generation_prompt=True) == (
        "USER: <M> What beeps?\nASSISTANT: The phone.</s>USER: And then?\nASSISTANT:")


def test_stack_padded_pads_masks_and_keeps_a_single_sample_uncopied():
    from transformers_av.models.common.processing_common import stack_padded

    a = np.arange(6, dtype=np.float32).reshape(3, 2)  # 3 steps
    b = torch.full((1, 2), 7.0)  # 1 step
    batch, mask = stack_padded([a, None, b])
    expected = torch.zeros(3, 3, 2)
    expected[0] = torch.from_numpy(a)
    expected[2, 0] = 7.0
    assert torch.equal(batch, expected) and batch.dtype == torch.float32
    assert mask.tolist() == [[True, True, True], [False, False, False], [True, False, False]]
    # along the last axis (Whisper's (80, frames) features), a bool tensor padded with False
    batch, mask = stack_padded([torch.ones(2, 4, dtype=torch.bool), torch.ones(2, 1, dtype=torch.bool)], dim=-1)
    assert batch.shape == (2, 2, 4) and batch.dtype == torch.bool
    assert batch[1].tolist() == [[True, False, False, False]] * 2 and mask.tolist() == [[True] * 4, [True] + [False] * 3]
    # one sample: the array itself (a long video's pixels are not copied)
    batch, mask = stack_padded([a])
    assert batch.shape == (1, 3, 2) and np.shares_memory(batch.numpy(), a) and mask.all()
