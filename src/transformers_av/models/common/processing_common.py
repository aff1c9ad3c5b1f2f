"""Turning per-sample prompts and media into one batch: what every processor of the package does the same way.

* `per_sample`: one entry per prompt, with the single-item shortcut for one prompt;
* `naming_the_sample`: errors raised while loading a sample's media say which sample it was;
* `vicuna_chat_template`: the chat template of the conversation format both families use;
* `prompt_token_ids` / `with_answer` / `pad_token_rows`: a prompt tokenised around its placeholder (expanded to the
  number of media tokens the model will produce), the answer appended as the only labelled tokens, left or right
  padding.
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


def check_waveform_rate(audio, sampling_rate) -> None:
    """An in-memory waveform needs its sample rate, which the processors take as `sampling_rate=`."""
    if audio is not None and sampling_rate is None and not is_media_file(audio):
        raise ValueError(
            f"the audio is a waveform in memory ({describe(audio)}): give its sample rate with `sampling_rate=` "
            "(e.g. sampling_rate=16000)."
        )


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
        and not isinstance(value[0], (str, Path, type(None)))
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


def prompt_token_ids(tokenizer, prompt: str, placeholder: str, placeholder_id: int, num_media_tokens: int) -> list[int]:
    """BOS, then the text around the placeholder tokenised piece by piece without special tokens (as the official
    code does), with the placeholder repeated `num_media_tokens` times."""
    ids = [tokenizer.bos_token_id] if tokenizer.bos_token_id is not None else []
    for position, segment in enumerate(prompt.split(placeholder)):
        if position:
            ids += [placeholder_id] * num_media_tokens
        if segment:
            ids += tokenizer(segment, add_special_tokens=False)["input_ids"]
    return ids


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


def pad_token_rows(rows: list[list[int]], label_rows: list[list[int]], pad_id: int, padding_side: str) -> dict:
    """`input_ids`, `attention_mask` and `labels` (B, L_max), padded on `padding_side` ("left" for generation)."""
    check_padding_side(padding_side)
    longest = max(len(r) for r in rows)
    input_ids = torch.full((len(rows), longest), pad_id, dtype=torch.long)
    attention_mask = torch.zeros(len(rows), longest, dtype=torch.long)
    labels = torch.full((len(rows), longest), -100, dtype=torch.long)
    for i, (ids, lab) in enumerate(zip(rows, label_rows)):
        span = slice(longest - len(ids), longest) if padding_side == "left" else slice(0, len(ids))
        input_ids[i, span] = torch.tensor(ids, dtype=torch.long)
        attention_mask[i, span] = 1
        labels[i, span] = torch.tensor(lab, dtype=torch.long)
    return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}


def vicuna_chat_template(media_text: str) -> str:
    """The Jinja chat template of the Vicuna conversation format every family prompts with: `USER: [media_text]
    question\nASSISTANT:` (a user turn holding a video, audio or image item gets `media_text` first), assistant turns
    `ASSISTANT: answer</s>`. `media_text` is the family's placeholder as it stands in a prompt, its trailing space
    included."""
    return (
    "{%- for message in messages -%}"
    "{%- if message['role'] == 'user' -%}"
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
    "check_padding_side",
    "check_waveform_rate",
    "describe",
    "is_media_file",
    "is_path",
    "naming_the_sample",
    "pad_token_rows",
    "per_sample",
    "prompt_token_ids",
    "vicuna_chat_template",
    "with_answer",
]
