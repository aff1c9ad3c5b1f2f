"""Portable tolerance for BEATs Kaldi fbank entries compared with a stored fbank computed elsewhere (issue 18).

Not a test module (pytest collects test_*.py only); imported by test_beats, test_processing_favor and
test_release_checkpoints.

Why a per-entry bound. The fbank is log(E) of mel energies E = sum_k w_k |X_k|^2 of a float32 FFT X. The FFT's own
round-off in a bin is about eps32 * sqrt(frame power), whatever the bin's value: an absolute error that scales with
the frame's amplitude, so about eps32 * sqrt(Emax) with Emax the frame's loudest mel energy. A mel bin of energy E
thus carries a relative error ~ eps32 * sqrt(Emax / E); the log turns that relative error into an absolute one, and
the BEATs normalisation (log E - mean) / (2 * std) divides it by 2 * std:

    |ours - reference| <= 1e-5 + C * eps32 * sqrt(Emax / E) / (2 * std)

The kernels are chosen at run time (MKL's FFT dispatches on the CPU: SSE4.2 / AVX2 / AVX-512 code paths; ATen's
vectorised kernels differ between its CPU capabilities), so the last bits of X and E differ between CPUs, and the
bins 40-120 dB below the frame's peak (low mel bins of speech, nearly everything but the peak of a pure tone) move by
1e-5..1e-2. On the AVX-512 Xeon of issue 18 the fbank of tests/fixtures/beats moved by 5.07e-05 in mel bins 0-5.

C = 16. Measured against tests/fixtures/beats with the FFT replaced by a float64 FFT and by four other float32
transforms (numpy's pocketfft, a complex FFT, a 2x zero-padded FFT, a direct DFT by matmul): over all entries
d / (eps32 * sqrt(Emax / E) / (2 * std)) peaks at 14 against a float64 pipeline (C = 16: ~1.1x margin) and at 20
against the float32 ones -- but those peaks sit at loud entries where d < 1e-6 and the 1e-5 term carries the bound.
Where d > 1e-5 (the entries the second term is for) the ratio stayed <= 0.6 for the FFTs and <= 0.95 for the direct
DFT: there C = 16 is a >= 16x margin; the worst entry used 10% of its bound. E is recovered from the reference
itself, log E = reference * 2 * std + mean; entries at the eps32 floor (log E = -15.94, digital silence) get huge
bounds, which is right: their value is rounding noise.
"""

from __future__ import annotations

import torch

EPS32 = torch.finfo(torch.float32).eps
BEATS_MEAN, BEATS_STD = 15.41663, 6.55582  # BeatsFeatureExtractor defaults (the official preprocessing)
FFT_ROUNDOFF_FACTOR = 16  # C above
ABSOLUTE = 1e-5  # log / normalisation round-off of the loud entries (measured <= 4.5e-6 within 50 dB of the peak)


def beats_energy(fbank: torch.Tensor) -> torch.Tensor:
    """Mel energies E (float64) of a normalised BEATs fbank: log E = fbank * 2 * std + mean."""
    return (fbank.double() * (2 * BEATS_STD) + BEATS_MEAN).exp()


def beats_fbank_bound(reference: torch.Tensor, loudest: torch.Tensor | None = None) -> torch.Tensor:
    """Per-entry bound on |ours - reference| for normalised BEATs fbank entries (..., frames, mel_bins).

    `loudest` is each frame's largest mel energy (..., frames, 1); by default taken from `reference`. Pass it when
    `reference` is a subset of the mel bins (a thinned fixture): compute it from the full fbank of our own run
    (the loudest bin is the one whose energy is known to a few ulps)."""
    energy = beats_energy(reference)
    if loudest is None:
        loudest = energy.max(dim=-1, keepdim=True).values
    return ABSOLUTE + FFT_ROUNDOFF_FACTOR * EPS32 * (loudest / energy).sqrt() / (2 * BEATS_STD)


def within_db_of_frame_peak(reference: torch.Tensor, decibels: float, loudest: torch.Tensor | None = None):
    """Mask of the entries whose energy is within `decibels` of their frame's loudest mel bin."""
    energy = beats_energy(reference)
    if loudest is None:
        loudest = energy.max(dim=-1, keepdim=True).values
    return energy >= loudest * 10 ** (-decibels / 10)
