"""A video's sound track decoded in a thread beside its frames (`media.background`): same values, same errors."""

from __future__ import annotations

import contextvars
import subprocess
import sys
import threading
from contextlib import contextmanager
from concurrent.futures import Future

import pytest
import torch

from transformers_av.media.background import in_background
from transformers_av.models.av_llm import processing_av_llm
from transformers_av.models.favor import processing_favor
from transformers_av.presets.tiny import tiny_av_llm_processor, tiny_processor
from transformers_av.synthetic.media import make_frames, make_tone, write_video

VARIABLE = contextvars.ContextVar("variable", default="unset")


def test_result_error_and_context():
    with in_background(lambda a, b: (a + b, VARIABLE.get()), 2, b=3) as future:
        pass
    assert future.result() == (5, "unset")
    token = VARIABLE.set("caller's")
    try:
        with in_background(VARIABLE.get) as future:
            pass
        assert future.result() == "caller's"  # the thread sees the caller's context variables
    finally:
        VARIABLE.reset(token)

    def failing():
        raise ValueError("the sound track is broken")

    with in_background(failing) as future:
        pass
    with pytest.raises(ValueError, match="the sound track is broken"):
        future.result()


def test_the_blocks_error_wins_and_the_thread_is_waited_for():
    finished = threading.Event()

    def slow():
        finished.wait(0.2)
        finished.set()
        raise ValueError("audio")

    with pytest.raises(KeyError, match="video"):
        with in_background(slow):
            raise KeyError("video")
    assert finished.is_set()  # leaving the block waited for the thread


@contextmanager
def inline(function, /, *args, **kwargs):
    """`in_background` without the thread: the sequential order."""
    future = Future()
    try:
        future.set_result(function(*args, **kwargs))
    except Exception as error:  # noqa: BLE001
        future.set_exception(error)
    yield future


@pytest.mark.parametrize("family", ["favor", "av_llm"])
def test_processors_give_the_sequential_values(tmp_path, monkeypatch, family):
    path = write_video(tmp_path / "clip.mp4", make_frames(50, 64, 64, seed=0), 25,
                       audio=make_tone(440.0, 2.0, 44100, channels=2), audio_sampling_rate=44100)
    processor = tiny_processor(image_size=28) if family == "favor" else tiny_av_llm_processor()
    module = processing_favor if family == "favor" else processing_av_llm
    started = []
    real = module.in_background

    def counting(*args, **kwargs):
        started.append(args[0])
        return real(*args, **kwargs)

    monkeypatch.setattr(module, "in_background", counting)
    text = "<AV> what happens?" if family == "favor" else "what happens?"
    beside = processor(text=text, videos=str(path))
    monkeypatch.setattr(module, "in_background", inline)
    sequential = processor(text=text, videos=str(path))
    assert len(started) == 1  # the sound track was decoded in a thread
    assert beside.keys() == sequential.keys()
    audio_keys = [key for key in beside if "audio" in key or "feature" in key]
    assert audio_keys
    for key in beside:
        if isinstance(beside[key], torch.Tensor):
            assert torch.equal(beside[key], sequential[key]), key


_FRAGMENT = """
import sys, threading
from transformers_av.media.background import in_background

def resident_mib():
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * 4096 / 2**20

def fragment(kept):
    # 128 MiB in 64 KiB pieces in this thread's malloc arena; every other one kept: 64 MiB freed between kept ones
    pieces = [bytearray(b"\\x01" * (64 * 1024)) for _ in range(2048)]
    kept.extend(pieces[1::2])

kept = []
before = resident_mib()
if sys.argv[1] == "thread":
    thread = threading.Thread(target=fragment, args=(kept,))
    thread.start()
    thread.join()
else:
    with in_background(fragment, kept):
        pass
assert len(kept) == 1024
print(resident_mib() - before)
"""


def _resident_growth(mode: str) -> float:
    done = subprocess.run([sys.executable, "-c", _FRAGMENT, mode], capture_output=True, text=True, check=True)
    return float(done.stdout)


def test_memory_freed_in_the_thread_goes_back():
    """A plain thread leaves the 64 MiB it freed resident (~128 MiB growth); `in_background` gives it back (~64)."""
    plain, background = _resident_growth("thread"), _resident_growth("background")
    assert plain > 100 and background < plain - 40, (plain, background)
