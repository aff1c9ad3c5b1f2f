"""Turning per-sample prompts and media into one batch: what every processor of the package does the same way.

* `per_sample`: one entry per prompt, with the single-item shortcut for one prompt;
* `naming_the_sample`: errors raised while loading a sample's media say which sample it was;
* `vicuna_chat_template`: the chat template of the conversation format both families use;
* `prompt_token_ids` / `with_answer` / `pad_token_rows`: a prompt tokenised around its placeholder (expanded to the
  number of media tokens the model will produce), the answer appended as the only labelled tokens, left or right
  padding to the longest row, to `max_length` or to a multiple of `pad_to_multiple_of` (transformers' `padding`
  strategies, read from the processor's merged `text_kwargs`);
* `stack_padded`: per-sample media tensors (frames, features) as one right-padded batch with the mask of real steps;
* `sample_media`: one media entry per prompt, also from the nested lists transformers' processors take
  (`[[image], [], ...]`) and chat templates produce;
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import numpy as np
import torch


@contextlib.contextmanager
def naming_the_sample(index: int):
    """Prefix errors raised while loading one sample's media with "Sample i:" so a bad item in a batch is findable."""
    try:
        yield
    except (ValueError, TypeError, OSError) as error:
        message = str(error)
        if message.startswith("Sample "):
            raise
        try:
            renamed = type(error)(f"Sample {index}: {message}")
        except Exception:  # an exception type whose constructor wants more than a message
            renamed = ValueError(f"Sample {index}: {message}")
        raise renamed from error


def describe(value) -> str:
    """A short name for a media input, for error messages."""
    if isinstance(value, (str, Path)):
        return str(value)
    shape = getattr(value, "shape", None)
    return f"{type(value).__name__} of shape {tuple(shape)}" if shape is not None else type(value).__name__


def is_path(value) -> bool:
    return isinstance(value, (str, Path))


def is_media_file(value) -> bool:
    """A container to decode (a path, bytes or a file-like object), as opposed to frames or a waveform in memory."""
    return is_path(value) or isinstance(value, (bytes, bytearray, memoryview)) or callable(getattr(value, "read", None))


def check_padding_side(padding_side: str) -> None:
    if padding_side not in ("left", "right"):
        raise ValueError(f"padding_side must be 'left' or 'right', got {padding_side!r}.")


def per_sample(name, value, batch_size):
    """One entry per prompt: a single item is accepted for a single prompt, lists must match the prompts."""
    if value is None:
        return [None] * batch_size
    single = isinstance(value, (str, Path, np.ndarray, torch.Tensor)) or not isinstance(value, (list, tuple))
    if name == "audio" and isinstance(value, (list, tuple)) and value and _is_number(value[0]):
        single = True  # a plain list of samples is one waveform, not a batch
    if (
        name in ("videos", "images")
        and isinstance(value, (list, tuple))
        and batch_size == 1
        and value
        and not isinstance(value[0], (str, Path, type(None), list, tuple))
        and getattr(value[0], "ndim", 3) != 4
    ):
        single = True  # a list of frames (H, W, 3) / PIL images for one sample; a (T, H, W, 3) entry is a whole video
    if single:
        if batch_size != 1:
            raise ValueError(f"`{name}` must be a list with one entry per prompt ({batch_size} prompts).")
        return [value]
    if len(value) != batch_size:
        raise ValueError(f"`{name}` has {len(value)} entries but there are {batch_size} prompts.")
    return list(value)


def _is_number(value) -> bool:
    return isinstance(value, (int, float, np.number)) and not isinstance(value, bool)


def sample_media(name: str, value, batch_size: int) -> list:
    """`per_sample`, also for transformers' nested layout: an entry that is a list of one item per sample (`[[image],
    [], [image]]`, as `apply_chat_template` and transformers' processors pass media) is unwrapped, an empty list is a
    sample without that medium. A list of frames stays one video. Two items for one sample are an error: each sample
    has one placeholder, standing for one video (or image) and one audio."""
    try:
        entries = per_sample(name, value, batch_size)
    except ValueError as error:  # worded like transformers' own check as well, which callers may match on
        raise ValueError(
            f"{error} The number of placeholder tokens in the prompts should be the same as the number of `{name}` "
            "entries: one per prompt (None or [] for a prompt without)."
        ) from None
    unwrapped = []
    for index, entry in enumerate(entries):
        if name == "audio" and isinstance(entry, (list, tuple)) and entry and _is_number(entry[0]):
            pass  # a plain list of samples is one waveform
        elif isinstance(entry, (list, tuple)) and len(entry) <= 1 and not _is_frame_list(name, entry):
            entry = entry[0] if entry else None
        elif isinstance(entry, (list, tuple)) and not _is_frame_list(name, entry):
            raise ValueError(
                f"Sample {index}: {len(entry)} items in `{name}`; each prompt takes one (its placeholder stands for "
                "one video or image and one audio)."
            )
        unwrapped.append(channels_last(entry) if name == "videos" else entry)
    return unwrapped


def _is_frame_list(name: str, entry) -> bool:
    """A non-empty list of frames (PIL images / (H, W, 3) arrays) given as one video."""
    return (
        name == "videos"
        and len(entry) > 1
        and not isinstance(entry[0], (str, Path, type(None), list, tuple))
        and getattr(entry[0], "ndim", 3) != 4
    )


def channels_last(video):
    """A numpy video `(T, 3, H, W)` (transformers' test and decoder layout) as `(T, H, W, 3)`, what the video loader
    reads; anything else is returned unchanged (torch tensors are read in both layouts by the loader)."""
    if isinstance(video, np.ndarray) and video.ndim == 4 and video.shape[1] in (1, 3) and video.shape[-1] not in (1, 3):
        return video.transpose(0, 2, 3, 1)
    return video


def in_memory_audio(value) -> bool:
    """A waveform given as numbers (numpy, torch or a list of floats), as opposed to a file to decode."""
    return value is not None and not is_media_file(value)


def prompt_token_ids(tokenizer, prompt: str, placeholder: str, placeholder_id: int, num_media_tokens: int,
                     add_special_tokens: bool = True) -> list[int]:
    """BOS (unless `add_special_tokens=False`), then the text around the placeholder tokenised piece by piece without
    special tokens (as the official code does), with the placeholder repeated `num_media_tokens` times."""
    ids = [tokenizer.bos_token_id] if add_special_tokens and tokenizer.bos_token_id is not None else []
    for position, segment in enumerate(prompt.split(placeholder)):
        if position:
            ids += [placeholder_id] * num_media_tokens
        if segment:
            ids += tokenizer(segment, add_special_tokens=False)["input_ids"]
    return ids


def prompt_token_offsets(tokenizer, prompt: str, placeholder: str, num_media_tokens: int,
                         add_special_tokens: bool = True) -> list[tuple[int, int]]:
    """The `(start, end)` character span of each token `prompt_token_ids` gives, in the prompt with its placeholder
    expanded (repeated `num_media_tokens` times), as a tokenizer's `offset_mapping` of that text would say: BOS
    `(0, 0)`, each placeholder copy its own span, each text token its span shifted to where its piece lies."""
    offsets = [(0, 0)] if add_special_tokens and tokenizer.bos_token_id is not None else []
    position = 0
    for index, segment in enumerate(prompt.split(placeholder)):
        if index:
            for _ in range(num_media_tokens):
                offsets.append((position, position + len(placeholder)))
                position += len(placeholder)
        if segment:
            spans = tokenizer(segment, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
            offsets += [(position + start, position + end) for start, end in spans]
            position += len(segment)
    return offsets


def with_answer(tokenizer, ids: list[int], answer: str | None, max_length: int | None, index: int,
                num_media_tokens: int = 0):
    """`(ids, labels)`: the prompt `ids` followed by the answer and EOS, the only tokens with labels (-100 elsewhere).
    `max_length` cuts the answer, never the prompt (a prompt that does not fit is an error naming the sample and its
    `num_media_tokens`)."""
    if max_length is not None and len(ids) > max_length:
        raise ValueError(
            f"Sample {index}: the prompt with its {num_media_tokens} media tokens needs {len(ids)} tokens, more than "
            f"max_length={max_length}."
        )
    labels = [-100] * len(ids)
    if answer is None:
        return ids, labels
    answer_ids = tokenizer(answer + (tokenizer.eos_token or ""), add_special_tokens=False)["input_ids"]
    if max_length is not None:
        answer_ids = answer_ids[: max_length - len(ids)]
    return ids + answer_ids, labels + answer_ids


def stack_padded(items: list, dim: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample tensors (or numpy arrays; ``None`` for a sample without them) as one batch right-padded with zeros
    along ``dim`` to the longest, and the ``(batch, longest)`` bool mask of each sample's real steps. A batch of one
    is that sample itself, not a copy (a long video's pixels are GBs). At least one item must be given."""
    tensors = [None if item is None else torch.as_tensor(item) for item in items]
    present = [tensor for tensor in tensors if tensor is not None]
    lengths = torch.tensor([0 if tensor is None else tensor.shape[dim] for tensor in tensors])
    longest = int(lengths.max())
    mask = torch.arange(longest)[None, :] < lengths[:, None]
    if len(tensors) == 1:
        return present[0][None], mask
    shape = list(present[0].shape)
    shape[dim] = longest
    batch = present[0].new_zeros(len(tensors), *shape)
    for i, tensor in enumerate(tensors):
        if tensor is not None:
            batch[i].narrow(dim, 0, tensor.shape[dim]).copy_(tensor)
    return batch, mask


def pad_token_rows(rows: list[list[int]], label_rows: list[list[int]], pad_id: int, padding_side: str,
                   length: int | None = None) -> dict:
    """`input_ids`, `attention_mask` and `labels` (B, L), padded on `padding_side` ("left" for generation) to the
    longest row, or to `length` when given (at least as long as every row)."""
    check_padding_side(padding_side)
    longest = max(len(r) for r in rows) if length is None else length
    input_ids = torch.full((len(rows), longest), pad_id, dtype=torch.long)
    attention_mask = torch.zeros(len(rows), longest, dtype=torch.long)
    labels = torch.full((len(rows), longest), -100, dtype=torch.long)
    for i, (ids, lab) in enumerate(zip(rows, label_rows)):
        span = slice(longest - len(ids), longest) if padding_side == "left" else slice(0, len(ids))
        input_ids[i, span] = torch.tensor(ids, dtype=torch.long)
        attention_mask[i, span] = 1
        labels[i, span] = torch.tensor(lab, dtype=torch.long)
    return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}


def padded_length(rows: list[list[int]], text_kwargs: dict) -> int | None:
    """The length every row is padded to under transformers' `padding` strategies (`padding`, `max_length`,
    `pad_to_multiple_of` of the merged `text_kwargs`), or `None` for no padding (`padding=False` /
    `"do_not_pad"`: rows keep their lengths)."""
    padding = text_kwargs.get("padding", False)
    strategy = getattr(padding, "value", padding)  # a transformers `PaddingStrategy` or its string
    if strategy in (False, None, "do_not_pad"):
        return None
    longest = max(len(row) for row in rows)
    if strategy == "max_length":
        max_length = text_kwargs.get("max_length")
        if max_length is None:
            raise ValueError("padding='max_length' needs `max_length` (the length to pad every sample to).")
        length = max(max_length, longest)
    elif strategy in (True, "longest"):
        length = longest
    else:
        raise ValueError(f"padding must be True/'longest', 'max_length' or False/'do_not_pad', got {padding!r}.")
    multiple = text_kwargs.get("pad_to_multiple_of")
    if multiple:
        length = -(-length // multiple) * multiple
    return length


def encode_rows(rows: list[list[int]], label_rows: list[list[int]], pad_id: int, text_kwargs: dict) -> dict:
    """The text part of a processor's output from token rows, following the merged `text_kwargs`: padded on
    `padding_side` as `padding` asks (rows of different lengths stay lists without padding), `attention_mask` unless
    `return_attention_mask=False`."""
    length = padded_length(rows, text_kwargs)
    padding_side = text_kwargs.get("padding_side") or "left"
    if length is None:
        encoded = {
            "input_ids": [list(row) for row in rows],
            "attention_mask": [[1] * len(row) for row in rows],
            "labels": [list(row) for row in label_rows],
        }
    else:
        encoded = pad_token_rows(rows, label_rows, pad_id, padding_side, length=length)
    if text_kwargs.get("return_attention_mask") is False:
        del encoded["attention_mask"]
    return encoded


def vicuna_chat_template(media_text: str) -> str:
    """The Jinja chat template of the Vicuna conversation format every family prompts with: `USER: [media_text]
    question\nASSISTANT:` (a user turn holding a video, audio or image item gets `media_text` first), assistant turns
    `ASSISTANT: answer</s>`; a system message's text comes first, followed by a space (Vicuna v1.1's system prompt
    layout). `media_text` is the family's placeholder as it stands in a prompt, its trailing space included."""
    return (
    "{%- for message in messages -%}"
    "{%- if message['role'] == 'system' -%}"
    "{%- if message['content'] is string -%}{{ message['content'] }}{%- else -%}"
    "{%- for item in message['content'] -%}{%- if item['type'] == 'text' -%}{{ item['text'] }}{%- endif -%}{%- endfor -%}"
    "{%- endif -%}{{ ' ' }}"
    "{%- elif message['role'] == 'user' -%}"
    "{%- set ns = namespace(media=false, text='') -%}"
    "{%- if message['content'] is string -%}{%- set ns.text = message['content'] -%}"
    "{%- else -%}{%- for item in message['content'] -%}"
    "{%- if item['type'] in ['video', 'audio', 'image'] -%}{%- set ns.media = true -%}"
    "{%- elif item['type'] == 'text' -%}{%- set ns.text = ns.text + item['text'] -%}{%- endif -%}"
    "{%- endfor -%}{%- endif -%}"
    "{{ 'USER: ' }}{%- if ns.media -%}{{ '" + media_text + "' }}{%- endif -%}{{ ns.text }}{{ '\n' }}"
    "{%- if loop.last and add_generation_prompt -%}{{ 'ASSISTANT:' }}{%- endif -%}"
    "{%- elif message['role'] == 'assistant' -%}"
    "{{ 'ASSISTANT: ' }}{%- if message['content'] is string -%}{{ message['content'] }}{%- else -%}"
    "{%- for item in message['content'] -%}{%- if item['type'] == 'text' -%}{{ item['text'] }}{%- endif -%}{%- endfor -%}"
    "{%- endif -%}{{ '</s>' }}"
    "{%- endif -%}"
    "{%- endfor -%}"
    )


__all__ = [
    "channels_last",
    "check_padding_side",
    "describe",
    "encode_rows",
    "in_memory_audio",
    "is_media_file",
    "is_path",
    "naming_the_sample",
    "pad_token_rows",
    "padded_length",
    "per_sample",
    "prompt_token_ids",
    "prompt_token_offsets",
    "sample_media",
    "vicuna_chat_template",
    "with_answer",
]
