"""How many tokens, and of what width, the Audio-Visual LLM makes of its media: pure arithmetic (numpy at most, no
torch modules) shared by the configuration, the processor and the model, so the processor's placeholder expansion and
the connector's output can never disagree.
"""

from __future__ import annotations

import numpy as np

from ..common.patch_grid import clip_num_patches

DEFAULT_NUM_SEGMENTS = 4


def split_into_segments(waveform: np.ndarray, num_segments: int = DEFAULT_NUM_SEGMENTS) -> list[np.ndarray]:
    """Cut a mono waveform into `num_segments` consecutive segments of equal length.

    Every segment has `len(waveform) // num_segments` samples; the last `len(waveform) % num_segments` samples (fewer
    than `num_segments`, i.e. under 0.1 ms at 48 kHz for K=4) are dropped. The segments are views into `waveform`.

    Args:
        waveform (`np.ndarray` of shape `(num_samples,)`): mono audio.
        num_segments (`int`, *optional*, defaults to 4): K.

    Returns:
        `list[np.ndarray]` of `num_segments` arrays of shape `(num_samples // num_segments,)`.

    Raises:
        ValueError: if `num_segments` is not a positive integer, `waveform` is not 1-D, or it has fewer than
            `num_segments` samples (a segment would be empty: treat such audio as absent instead).
    """
    if isinstance(num_segments, bool) or not isinstance(num_segments, (int, np.integer)) or num_segments < 1:
        raise ValueError(f"num_segments must be a positive integer, got {num_segments!r}.")
    waveform = np.asarray(waveform)
    if waveform.ndim != 1:
        raise ValueError(
            f"waveform must be mono with shape (num_samples,), got shape {waveform.shape}; downmix it first."
        )
    segment_length = waveform.shape[0] // num_segments
    if segment_length == 0:
        raise ValueError(
            f"waveform has {waveform.shape[0]} samples, fewer than num_segments={num_segments}: every segment would "
            "be empty. Mark the audio of this sample as absent instead."
        )
    return [waveform[k * segment_length : (k + 1) * segment_length] for k in range(num_segments)]


def _pair(value: int | tuple[int, int] | list[int]) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else (int(value[0]), int(value[1]))


def clap_flat_token_size(config: ClapAudioConfig) -> int:
    """Width of one flattened segment token, from the config alone (usable on the meta device).

    It is the number of elements of `ClapAudioModel(...).last_hidden_state` for one segment: the width of the last
    Swin stage (`patch_embeds_hidden_size * 2 ** (len(depths) - 1)`) times the tokens of its grid (the
    `spec_size`-square spectrogram image divided by the patch stride and by 2 per patch merging).
    `laion/clap-htsat-*`: 768 x (256 / 4 / 8) ** 2 = 49,152.
    """
    num_stages = len(config.depths)
    num_features = int(config.patch_embeds_hidden_size * 2 ** (num_stages - 1))
    freq_ratio = config.spec_size // config.num_mel_bins
    image_height = (config.spec_size // freq_ratio) * freq_ratio  # rows of the spectrogram image the tower sees
    stride_freq, stride_time = _pair(config.patch_stride)
    downsample = 2 ** (num_stages - 1)
    return num_features * (image_height // downsample // stride_freq) * (image_height // downsample // stride_time)


def _check_count(name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{name} must be a non-negative integer, got {value!r}.")


def linear_connector_token_count(
    num_frames: int, num_patches: int, num_segments: int, *, visual: bool, audio: bool
) -> int:
    """Number of LLM tokens [`LinearAudioVisualConnector`] produces for one sample.

    Args:
        num_frames (`int`): valid video frames of the sample (T_valid).
        num_patches (`int`): spatial tokens of the vision encoder (P, 256 for CLIP ViT-L/14 at 224 px).
        num_segments (`int`): valid audio segments of the sample (K_valid, 4 by default).
        visual (`bool`): whether the sample's visual tokens are used (`<VIS>` / `<AUD_VIS>`); needs `num_frames >= 1`.
        audio (`bool`): whether the sample's audio tokens are used (`<AUD>` / `<AUD_VIS>`); needs `num_segments >= 1`.

    Returns:
        `int`: `(num_frames + num_patches if visual else 0) + (num_segments if audio else 0)`.
    """
    _check_count("num_frames", num_frames)
    _check_count("num_patches", num_patches)
    _check_count("num_segments", num_segments)
    count = 0
    if visual:
        if num_frames < 1:
            raise ValueError("visual=True needs num_frames >= 1: a sample without frames has no visual tokens.")
        count += num_frames + num_patches
    if audio:
        if num_segments < 1:
            raise ValueError("audio=True needs num_segments >= 1: a sample without audio segments has no audio tokens.")
        count += num_segments
    return count


__all__ = [
    "DEFAULT_NUM_SEGMENTS",
    "clap_flat_token_size",
    "clip_num_patches",
    "linear_connector_token_count",
    "split_into_segments",
]
