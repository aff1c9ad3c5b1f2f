"""Feature extractor of BEATs: Kaldi-compatible log-mel filterbank of 16 kHz audio, normalised like the official
`BEATs.preprocess`.

The filterbank is a pure-torch reimplementation of `torchaudio.compliance.kaldi.fbank` restricted to the options the
official BEATs preprocessing uses (torchaudio is not needed): 25 ms povey-windowed frames every 10 ms (snip_edges),
per-frame DC removal, pre-emphasis 0.97, 512-point FFT power spectrum, 128 triangular mel filters between 20 Hz and
Nyquist, natural log floored at float32 epsilon; no dither, no energy term. The waveform is scaled to the int16 range
first (x * 2**15), then the fbank is normalised as (fbank - mean) / (2 * std).
"""

from __future__ import annotations

import functools
import math

import numpy as np
import torch
from transformers.feature_extraction_sequence_utils import SequenceFeatureExtractor
from transformers.feature_extraction_utils import BatchFeature
from transformers.utils import TensorType, logging


logger = logging.get_logger(__name__)


def _mel(freq):
    # Kaldi's mel scale, 1127 * ln(1 + f / 700)
    if isinstance(freq, torch.Tensor):
        return 1127.0 * (1.0 + freq / 700.0).log()
    return 1127.0 * math.log(1.0 + freq / 700.0)


def kaldi_mel_banks(
    num_mel_bins: int, padded_window_size: int, sample_frequency: float, low_freq: float, high_freq: float
) -> torch.Tensor:
    """(num_mel_bins, padded_window_size // 2 + 1) float32 triangular filters, evenly spaced on Kaldi's mel scale
    (no VTLN warping); the Nyquist column is zero, as in Kaldi."""
    if num_mel_bins <= 3:
        raise ValueError("Kaldi fbank needs more than 3 mel bins")
    nyquist = 0.5 * sample_frequency
    if high_freq <= 0.0:
        high_freq = high_freq + nyquist
    if not (0.0 <= low_freq < nyquist and 0.0 < high_freq <= nyquist and low_freq < high_freq):
        raise ValueError(f"Bad mel range low_freq={low_freq}, high_freq={high_freq} for nyquist {nyquist}")
    num_fft_bins = padded_window_size // 2
    bin_width = sample_frequency / padded_window_size
    mel_low, mel_high = _mel(low_freq), _mel(high_freq)
    mel_step = (mel_high - mel_low) / (num_mel_bins + 1)

    index = torch.arange(num_mel_bins, dtype=torch.float32).unsqueeze(1)
    left = mel_low + index * mel_step
    center = mel_low + (index + 1.0) * mel_step
    right = mel_low + (index + 2.0) * mel_step
    fft_mel = _mel(bin_width * torch.arange(num_fft_bins, dtype=torch.float32)).unsqueeze(0)
    rising = (fft_mel - left) / (center - left)
    falling = (right - fft_mel) / (right - center)
    banks = torch.clamp(torch.min(rising, falling), min=0.0)
    return torch.nn.functional.pad(banks, (0, 1), mode="constant", value=0.0)


@functools.lru_cache(maxsize=8)
def _cached_mel_banks(*args) -> torch.Tensor:
    return kaldi_mel_banks(*args)


def kaldi_fbank(
    waveform: torch.Tensor,
    num_mel_bins: int = 128,
    sample_frequency: float = 16000.0,
    frame_length_ms: float = 25.0,
    frame_shift_ms: float = 10.0,
    low_freq: float = 20.0,
    high_freq: float = 0.0,
    preemphasis_coefficient: float = 0.97,
    mel_banks: torch.Tensor | None = None,
) -> torch.Tensor:
    """Log mel filterbank (frames, num_mel_bins) of a 1-D float32 waveform, equal to
    `torchaudio.compliance.kaldi.fbank(waveform[None], num_mel_bins=..., sample_frequency=..., frame_length=...,
    frame_shift=...)` with every other option at its default. `waveform` is expected in int16 range."""
    if waveform.dim() != 1:
        raise ValueError(f"kaldi_fbank expects a 1-D waveform, got shape {tuple(waveform.shape)}")
    window_shift = int(sample_frequency * frame_shift_ms * 0.001)
    window_size = int(sample_frequency * frame_length_ms * 0.001)
    if waveform.numel() < window_size:
        return waveform.new_zeros(0, num_mel_bins)
    options = (num_mel_bins, sample_frequency, window_size, window_shift, low_freq, high_freq,
               preemphasis_coefficient, mel_banks)
    num_frames = 1 + (waveform.numel() - window_size) // window_shift
    if num_frames <= 2 * _FBANK_BLOCK_FRAMES:
        return _fbank_frames(waveform, *options)
    # A long waveform in blocks of `_FBANK_BLOCK_FRAMES` frames written into the result: all frames at once need
    # ~10 float copies of the framed signal (~550 MB for 10 minutes). Every block has the same size (the last one
    # zero-padded): each frame's value is then computed exactly as in one call (tests/models/beats).
    result = waveform.new_empty(num_frames, num_mel_bins)
    span = (_FBANK_BLOCK_FRAMES - 1) * window_shift + window_size  # the samples of a block's frames
    for first in range(0, num_frames, _FBANK_BLOCK_FRAMES):
        piece = waveform[first * window_shift : first * window_shift + span]
        if piece.numel() < span:
            piece = torch.nn.functional.pad(piece, (0, span - piece.numel()))
        count = min(_FBANK_BLOCK_FRAMES, num_frames - first)
        result[first : first + count] = _fbank_frames(piece, *options)[:count]
    return result


#: Frames per block of `kaldi_fbank` on waveforms longer than two blocks (2,048 frames: 20 s at 16 kHz; ~30 MB of
#: working memory per block).
_FBANK_BLOCK_FRAMES = 2048


def _fbank_frames(
    waveform: torch.Tensor,
    num_mel_bins: int,
    sample_frequency: float,
    window_size: int,
    window_shift: int,
    low_freq: float,
    high_freq: float,
    preemphasis_coefficient: float,
    mel_banks: torch.Tensor | None,
) -> torch.Tensor:
    """`kaldi_fbank` of every frame of `waveform` at once."""
    padded_window_size = 1 << (window_size - 1).bit_length()  # round_to_power_of_two
    # snip_edges: only frames that fit entirely
    frames = waveform.unfold(0, window_size, window_shift)  # (m, window_size)
    frames = frames - frames.mean(dim=1).unsqueeze(1)  # remove DC offset
    previous = torch.nn.functional.pad(frames.unsqueeze(0), (1, 0), mode="replicate").squeeze(0)[:, :-1]
    frames = frames - preemphasis_coefficient * previous
    window = torch.hann_window(window_size, periodic=False, dtype=frames.dtype, device=frames.device).pow(0.85)
    frames = frames * window.unsqueeze(0)  # povey window
    frames = torch.nn.functional.pad(frames.unsqueeze(0), (0, padded_window_size - window_size)).squeeze(0)

    power = torch.fft.rfft(frames).abs().pow(2.0)  # (m, padded_window_size // 2 + 1)
    if mel_banks is None:
        mel_banks = _cached_mel_banks(num_mel_bins, padded_window_size, sample_frequency, low_freq, high_freq)
    energies = torch.mm(power, mel_banks.to(device=power.device, dtype=power.dtype).T)
    eps = torch.tensor(torch.finfo(torch.float).eps, device=energies.device, dtype=energies.dtype)
    return torch.max(energies, eps).log()


class BeatsFeatureExtractor(SequenceFeatureExtractor):
    r"""
    Feature extractor of [`BeatsModel`]: raw 16 kHz mono audio -> normalised Kaldi fbank `input_features`
    (batch, frames, 128), right-padded with `padding_value` to the longest sample, and `attention_mask`
    (batch, frames), 1 for real frames. A sample of `n` samples gives `1 + (n - 400) // 160` frames (0 below 400).

    Every sample is featurised on its own (like the official per-waveform loop), so padding never leaks into the
    real frames.

    Args:
        feature_size (`int`, defaults to 128): number of mel bins.
        sampling_rate (`int`, defaults to 16000): the only rate accepted.
        padding_value (`float`, defaults to 0.0): value of padded frames of `input_features`.
        mean (`float`, defaults to 15.41663), std (`float`, defaults to 6.55582): fbank statistics of the official
            preprocessing; features are `(fbank - mean) / (2 * std)`.
        do_normalize (`bool`, defaults to `True`): apply that normalisation.
        frame_length_ms, frame_shift_ms (`float`, defaults 25 / 10), low_freq (`float`, 20), high_freq (`float`, 0 ->
            Nyquist), preemphasis_coefficient (`float`, 0.97): Kaldi options (defaults = official BEATs).
    """

    model_input_names = ["input_features", "attention_mask"]

    def __init__(
        self,
        feature_size: int = 128,
        sampling_rate: int = 16000,
        padding_value: float = 0.0,
        mean: float = 15.41663,
        std: float = 6.55582,
        do_normalize: bool = True,
        frame_length_ms: float = 25.0,
        frame_shift_ms: float = 10.0,
        low_freq: float = 20.0,
        high_freq: float = 0.0,
        preemphasis_coefficient: float = 0.97,
        return_attention_mask: bool = True,
        **kwargs,
    ):
        super().__init__(
            feature_size=feature_size,
            sampling_rate=sampling_rate,
            padding_value=padding_value,
            return_attention_mask=return_attention_mask,
            **kwargs,
        )
        self.mean = mean
        self.std = std
        self.do_normalize = do_normalize
        self.frame_length_ms = frame_length_ms
        self.frame_shift_ms = frame_shift_ms
        self.low_freq = low_freq
        self.high_freq = high_freq
        self.preemphasis_coefficient = preemphasis_coefficient

    @property
    def num_mel_bins(self) -> int:
        return self.feature_size

    def num_frames(self, num_samples: int) -> int:
        """Frames of the fbank of `num_samples` samples (snip_edges)."""
        window_size = int(self.sampling_rate * self.frame_length_ms * 0.001)
        window_shift = int(self.sampling_rate * self.frame_shift_ms * 0.001)
        return 0 if num_samples < window_size else 1 + (num_samples - window_size) // window_shift

    def extract_fbank(self, waveform: torch.Tensor) -> torch.Tensor:
        """(frames, num_mel_bins) normalised fbank of one float waveform in [-1, 1] (computed in float32)."""
        waveform = waveform.to(torch.float32) * 2**15
        fbank = kaldi_fbank(
            waveform,
            num_mel_bins=self.feature_size,
            sample_frequency=float(self.sampling_rate),
            frame_length_ms=self.frame_length_ms,
            frame_shift_ms=self.frame_shift_ms,
            low_freq=self.low_freq,
            high_freq=self.high_freq,
            preemphasis_coefficient=self.preemphasis_coefficient,
        )
        if self.do_normalize:
            fbank = (fbank - self.mean) / (2 * self.std)
        return fbank

    @staticmethod
    def _to_waveform_list(raw_speech) -> list[torch.Tensor]:
        if isinstance(raw_speech, torch.Tensor):
            items = [raw_speech] if raw_speech.dim() <= 1 else list(raw_speech)
        elif isinstance(raw_speech, np.ndarray):
            items = [raw_speech] if raw_speech.ndim <= 1 else list(raw_speech)
        elif isinstance(raw_speech, (list, tuple)):
            is_batch = len(raw_speech) > 0 and isinstance(raw_speech[0], (list, tuple, np.ndarray, torch.Tensor))
            items = list(raw_speech) if is_batch else [raw_speech]
        else:
            raise TypeError(f"Unsupported audio input type {type(raw_speech).__name__}")
        waveforms = []
        for item in items:
            if isinstance(item, torch.Tensor):
                tensor = item.detach().cpu()
            else:
                tensor = torch.from_numpy(np.asarray(item))
            if tensor.dim() != 1:
                raise ValueError(f"Only mono audio is supported: every waveform must be 1-D, got {tuple(tensor.shape)}")
            waveforms.append(tensor.to(torch.float32))
        return waveforms

    def __call__(
        self,
        raw_speech,
        sampling_rate: int | None = None,
        return_tensors: str | TensorType | None = None,
        return_attention_mask: bool | None = None,
        padding: bool | str = "longest",
        max_length: int | None = None,
        truncation: bool = False,
        pad_to_multiple_of: int | None = None,
        **kwargs,
    ) -> BatchFeature:
        """Featurise one waveform or a batch of waveforms (float in [-1, 1]; list, numpy or torch).

        `padding` / `max_length` / `truncation` / `pad_to_multiple_of` act on frames, as in
        [`~SequenceFeatureExtractor.pad`]. Returns `input_features` (B, frames, feature_size) and, unless disabled,
        `attention_mask` (B, frames).
        """
        if sampling_rate is None:
            logger.warning(
                f"It is strongly recommended to pass `sampling_rate` to {self.__class__.__name__}(); assuming "
                f"{self.sampling_rate} Hz."
            )
        elif sampling_rate != self.sampling_rate:
            raise ValueError(
                f"{self.__class__.__name__} expects audio sampled at {self.sampling_rate} Hz, got {sampling_rate} Hz: "
                f"resample the audio to {self.sampling_rate} Hz first."
            )
        waveforms = self._to_waveform_list(raw_speech)
        features = [self.extract_fbank(w).numpy() for w in waveforms]
        batch = BatchFeature({"input_features": features})
        padded = self.pad(
            batch,
            padding=padding,
            max_length=max_length,
            truncation=truncation,
            pad_to_multiple_of=pad_to_multiple_of,
            return_attention_mask=self.return_attention_mask if return_attention_mask is None else return_attention_mask,
        )
        if return_tensors is not None:
            padded = padded.convert_to_tensors(return_tensors)
        return padded


__all__ = ["BeatsFeatureExtractor", "kaldi_fbank", "kaldi_mel_banks"]
