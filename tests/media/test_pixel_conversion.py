"""`FavorImageProcessor.preprocess_frames` converts frames one at a time through a reused float buffer: its pixels
must be bit-identical to the whole-batch conversion it replaced (the official code's
`frames.permute(0, 3, 1, 2).float() / 255`, bicubic `interpolate`, CLIP normalisation)."""

import numpy as np
import pytest
import torch

from transformers_av.models.favor.image_processing_favor import CLIP_MEAN, CLIP_STD, FavorImageProcessor
from transformers_av.presets.tiny import tiny_processor
from transformers_av.testing import make_tone, write_video


def whole_batch_pixels(
    frames: np.ndarray,
    size: int = 224,
    mode: str = "bicubic",
    antialias: bool = False,
    rescale_factor: float | None = 1 / 255,
    normalize: bool = True,
) -> torch.Tensor:
    """The former implementation, kept here as the reference: every frame converted to float at once."""
    pixels = torch.from_numpy(frames).permute(0, 3, 1, 2).float()
    if rescale_factor is not None:
        pixels = pixels / 255.0 if rescale_factor == 1 / 255 else pixels * rescale_factor
    pixels = torch.nn.functional.interpolate(
        pixels, size=(size, size), mode=mode, align_corners=False if mode in ("bilinear", "bicubic") else None,
        antialias=antialias,
    )
    if not normalize:
        return pixels
    mean = torch.tensor(CLIP_MEAN).reshape(-1, 1, 1)
    std = torch.tensor(CLIP_STD).reshape(-1, 1, 1)
    return (pixels - mean) / std


@pytest.fixture(scope="module")
def noise_frames() -> np.ndarray:
    # odd sizes, full 0..255 range: every value path of the conversion
    return np.random.default_rng(0).integers(0, 256, size=(5, 97, 131, 3), dtype=np.uint8)


@pytest.mark.parametrize(
    "settings, reference",
    [
        ({}, {}),
        ({"size": 28}, {"size": 28}),  # downscale
        ({"size": 160}, {"size": 160}),  # upscale
        ({"rescale_factor": 0.5}, {"rescale_factor": 0.5}),
        ({"do_rescale": False}, {"rescale_factor": None}),
        ({"do_normalize": False}, {"normalize": False}),
    ],
)
def test_pixels_are_bit_identical_to_the_whole_batch_conversion(noise_frames, settings, reference):
    pixels = FavorImageProcessor().preprocess_frames(noise_frames, **settings)
    expected = whole_batch_pixels(noise_frames, **reference)
    assert pixels.dtype == torch.float32 and pixels.is_contiguous()
    assert torch.equal(pixels, expected)


def test_other_resampling_modes_are_bit_identical(noise_frames):
    pixels = FavorImageProcessor(size=48, resample="bilinear", antialias=True).preprocess_frames(noise_frames)
    assert torch.equal(pixels, whole_batch_pixels(noise_frames, size=48, mode="bilinear", antialias=True))
    pixels = FavorImageProcessor(size=48, resample="nearest").preprocess_frames(noise_frames)
    assert torch.equal(pixels, whole_batch_pixels(noise_frames, size=48, mode="nearest"))


def test_processor_outputs_on_a_generated_clip_are_unchanged(tmp_path, monkeypatch):
    """A decoded clip end to end: the processor's pixel values and audio features equal those it gives with the
    former whole-batch conversion patched back in."""
    frames = np.random.default_rng(1).integers(0, 256, size=(24, 90, 158, 3), dtype=np.uint8)  # 3 s at 8 fps
    path = write_video(tmp_path / "noise.mp4", frames, fps=8, audio=make_tone(440.0, 3.0), audio_sampling_rate=16000)
    processor = tiny_processor(image_size=28)
    batch = processor(text="What is shown?", videos=path)

    def former(frames, out=None, **ignored):
        pixels = whole_batch_pixels(np.asarray(frames), size=28)
        return pixels if out is None else out.copy_(pixels)

    monkeypatch.setattr(processor.image_processor, "preprocess_frames", former)
    expected = processor(text="What is shown?", videos=path)
    assert batch["pixel_values_videos"].shape[1] == 6  # 3 s at 2 fps
    for name in ("pixel_values_videos", "input_features", "audio_input_features", "input_ids"):
        assert torch.equal(batch[name], expected[name]), name


def _convert_in_child(path: str, queue) -> None:
    from transformers_av.media.video import load_video

    queue.put(load_video(path, fps=2, max_frames=2).frames.sum().item())


def test_a_forked_process_converts_frames_after_its_parent(tmp_path):
    """A DataLoader worker forked after its parent converted frames converts its own (PyAV 18.1.1 shares a swscale
    context per thread whose worker threads do not survive a fork: converting through it waited forever)."""
    import multiprocessing

    from transformers_av.media.video import load_video
    from transformers_av.synthetic.media import make_frames, write_video

    path = str(write_video(tmp_path / "clip.mp4", make_frames(8, 64, 64, seed=0), 4))
    expected = load_video(path, fps=2, max_frames=2).frames.sum().item()  # the parent's conversions first
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    child = context.Process(target=_convert_in_child, args=(path, queue))
    child.start()
    child.join(timeout=60)
    if child.is_alive():
        child.kill()
        raise AssertionError("the forked process is still converting after 60 s")
    assert child.exitcode == 0 and queue.get(timeout=5) == expected
