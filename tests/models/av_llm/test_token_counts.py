"""Audio-Visual LLM (Shu et al.) token counts (`models/av_llm/token_counts.py`): waveform segments and the CLAP
token size, worked out by hand."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers import ClapAudioConfig

from transformers_av.models.av_llm.clap_segments import ClapSegmentEncoder
from transformers_av.models.av_llm.token_counts import clap_flat_token_size, split_into_segments


def test_split_into_segments_by_hand():
    waveform = np.arange(10, dtype=np.float32)
    segments = split_into_segments(waveform, 4)  # 10 // 4 = 2 samples each, samples 8 and 9 dropped
    assert [s.tolist() for s in segments] == [[0, 1], [2, 3], [4, 5], [6, 7]]
    assert all(np.shares_memory(s, waveform) for s in segments)
    assert [len(s) for s in split_into_segments(np.zeros(48000 * 3 + 3), 4)] == [36000] * 4
    assert [s.tolist() for s in split_into_segments(np.arange(4.0), 4)] == [[0.0], [1.0], [2.0], [3.0]]
    assert [s.tolist() for s in split_into_segments(np.arange(3.0), 1)] == [[0.0, 1.0, 2.0]]
    with pytest.raises(ValueError, match="waveform has 3 samples, fewer than num_segments=4"):
        split_into_segments(np.zeros(3), 4)
    with pytest.raises(ValueError, match="waveform has 0 samples"):
        split_into_segments(np.zeros(0), 4)
    with pytest.raises(ValueError, match="waveform must be mono"):
        split_into_segments(np.zeros((100, 2)), 4)
    with pytest.raises(ValueError, match="num_segments must be a positive integer"):
        split_into_segments(np.zeros(100), 0)


def test_clap_flat_token_size_from_config_alone():
    # laion/clap-htsat-*: 4 stages, 96 * 2**3 = 768 channels on a (256 / 4 / 8) ** 2 = 64 token grid
    assert clap_flat_token_size(ClapAudioConfig()) == 768 * 64
    three_stages = ClapAudioConfig(
        depths=[1, 1, 1], num_attention_heads=[1, 2, 4], patch_embeds_hidden_size=8, spec_size=128,
        num_mel_bins=32, window_size=4, patch_size=4, patch_stride=4,
    )  # fmt: skip
    assert clap_flat_token_size(three_stages) == 32 * (128 // 4 // 4) ** 2
    with torch.device("meta"):
        on_meta = ClapSegmentEncoder(three_stages)
    assert on_meta.flat_token_size == 2048
    torch.manual_seed(5)
    encoder = ClapSegmentEncoder(three_stages).eval()
    with torch.no_grad():
        tokens = encoder(torch.randn(1, 1, 1, 40, 32))
    assert tokens.shape == (1, 1, 2048)
