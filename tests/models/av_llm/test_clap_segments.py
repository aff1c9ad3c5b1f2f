"""Audio-Visual LLM (Shu et al.) CLAP segment encoder (`models/av_llm/clap_segments.py`).

Every encoder output is compared with a direct call of the transformers CLAP audio tower on the same inputs.
"""

from __future__ import annotations


import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from transformers import ClapAudioModel, ClapFeatureExtractor

from transformers_av.models.av_llm.clap_segments import ClapSegmentEncoder
from transformers_av.models.av_llm.token_counts import clap_flat_token_size, split_into_segments
from transformers_av.presets.tiny import tiny_clap_audio_config

from module_calls import batch_sizes_seen_by

# Same tower, same inputs, same process: our encoder wrappers vs a direct call of the transformers tower. Mostly the
# very same kernels on the same tensors (measured 0); where the batch differs (5 valid frames vs 2, a frame alone vs in
# a batch) the fp32 matmul blocking changes the summation order: a few ulps of O(1) values (measured <= 3.6e-7 under
# every setting of tools/check_portability.sh): 1e-6.
ATOL = 1e-6



def _segment_features(num_segments: int = 4) -> torch.Tensor:
    """(K, 1, 101, 16) CLAP features of the K segments of a 4 s two-tone clip at 48 kHz."""
    rate = 48000
    time = np.arange(4 * rate) / rate
    waveform = (0.5 * np.sin(2 * np.pi * 440 * time) * (time < 2) + 0.3 * np.sin(2 * np.pi * 1500 * time)).astype(
        np.float32
    )
    extractor = ClapFeatureExtractor(feature_size=16, max_length_s=1, truncation="rand_trunc", padding="repeatpad")
    segments = split_into_segments(waveform, num_segments)  # 1 s each = max_length_s: no random truncation
    features = extractor(segments, sampling_rate=rate, return_tensors="pt")["input_features"]
    return features  # (K, 1, 101, 16)


def test_clap_segments_match_direct_clap_call_per_segment():
    torch.manual_seed(4)
    config = tiny_clap_audio_config()
    encoder = ClapSegmentEncoder(config).eval()
    features = _segment_features()
    assert features.shape == (4, 1, 101, 16)
    batch = torch.stack([features, features.flip(0)])  # (2, K=4, 1, 101, 16)
    mask = torch.tensor([[True, True, True, True], [True, False, True, False]])
    batch[~mask] = float("nan")

    with torch.no_grad():
        with batch_sizes_seen_by(encoder.audio_model.audio_encoder.patch_embed) as tower_batches:
            tokens = encoder(batch, mask)
        assert tower_batches == [6]  # one call, valid segments only
        direct = [
            encoder.audio_model(input_features=batch[b, k][None]).last_hidden_state.flatten()
            for b, k in mask.nonzero().tolist()
        ]

    assert encoder.flat_token_size == clap_flat_token_size(config) == 32 * 1 * 16
    assert tokens.shape == (2, 4, 512) and not tokens.isnan().any()
    for (b, k), expected in zip(mask.nonzero().tolist(), direct):
        torch.testing.assert_close(tokens[b, k], expected, rtol=0, atol=ATOL)
    assert torch.equal(tokens[1, 1], torch.zeros(512)) and torch.equal(tokens[1, 3], torch.zeros(512))
    torch.testing.assert_close(tokens[1, 0], tokens[0, 3], rtol=0, atol=ATOL)  # same segment, other batch row
    assert not torch.allclose(tokens[0, 0], tokens[0, 3])  # different segments: O(1) apart (measured 1.5)

    with torch.no_grad():
        assert torch.equal(encoder(batch, torch.zeros(2, 4, dtype=torch.bool)), torch.zeros(2, 4, 512))
    with pytest.raises(ValueError, match="input_features has 8 mel bins"):
        encoder(torch.zeros(1, 4, 1, 101, 8))
    with pytest.raises(ValueError, match="segment_mask has shape"):
        encoder(batch, mask[:, :2])
    with pytest.raises(ValueError, match="input_features must have shape"):
        encoder(features)



def test_clap_tower_weights_load_bit_exact(tmp_path):
    torch.manual_seed(6)
    reference = ClapAudioModel(tiny_clap_audio_config()).eval()
    reference.save_pretrained(tmp_path)
    saved = load_file(tmp_path / "model.safetensors")  # ClapAudioModel keys: audio_encoder.*
    encoder = ClapSegmentEncoder(tiny_clap_audio_config()).eval()
    result = encoder.load_tower_state_dict(saved)
    assert not result.missing_keys and not result.unexpected_keys
    for name, tensor in reference.state_dict().items():
        assert torch.equal(encoder.state_dict()[f"audio_model.{name}"], tensor), name

    clap_model_layout = {f"audio_model.{k}": v for k, v in saved.items()}
    clap_model_layout.update({"logit_scale_a": torch.tensor(1.0), "text_model.embeddings.x": torch.zeros(1)})
    other = ClapSegmentEncoder(tiny_clap_audio_config()).eval()
    other.load_tower_state_dict(clap_model_layout)
    features = _segment_features()[None]  # (1, 4, 1, 101, 16)
    with torch.no_grad():
        expected = ClapAudioModel.from_pretrained(tmp_path).eval()(input_features=features[0]).last_hidden_state
        assert torch.equal(other(features)[0], expected.flatten(1))
