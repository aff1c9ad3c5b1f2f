"""CLAP (HTSAT) segment encoder of the Audio-Visual LLM (Shu et al., 2023): K audio segments -> K flat tokens.

The sound track is cut into `K` equal segments ([`split_into_segments`], K=4 by default); each segment is turned into
CLAP log-mel features by `transformers.ClapFeatureExtractor` (48 kHz input), encoded by the HTSAT audio tower, and its
whole last hidden state is flattened into ONE token of width [`clap_flat_token_size`] (49,152 = 768 x 64 for
`laion/clap-htsat-*`).

Checkpoint layout: the tower is a `transformers.ClapAudioModel` held as `self.audio_model`, so the state dict of this
module is `audio_model.<ClapAudioModel key>` (`audio_model.audio_encoder.*`), exactly the layout of the audio half of a
`ClapModel` checkpoint such as `laion/clap-htsat-unfused`. [`ClapSegmentEncoder.load_tower_state_dict`] also accepts
the unprefixed keys that `ClapAudioModel.save_pretrained` writes.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch
from torch import nn
from transformers import ClapAudioConfig, ClapAudioModel

from .token_counts import DEFAULT_NUM_SEGMENTS, clap_flat_token_size

TOWER_PREFIX = "audio_model."
class ClapSegmentEncoder(nn.Module):
    """Encodes K audio segments per sample with a CLAP/HTSAT audio tower into K flat tokens.

    Args:
        config (`ClapAudioConfig`):
            Configuration of the audio tower (`laion/clap-htsat-unfused`'s `audio_config` for the Audio-Visual LLM).
        num_segments (`int`, *optional*, defaults to 4):
            K, the number of segments a clip is cut into (informational: `forward` accepts any K).

    The tower's `BatchNorm2d` normalises with its running statistics in `eval()` mode; keep the encoder frozen and in
    eval mode (a train-mode batch norm would make a segment's token depend on the other segments of the batch).
    """

    def __init__(self, config: ClapAudioConfig, num_segments: int = DEFAULT_NUM_SEGMENTS):
        super().__init__()
        if num_segments < 1:
            raise ValueError(f"num_segments must be a positive integer, got {num_segments}.")
        self.config = config
        self.num_segments = num_segments
        self.audio_model = ClapAudioModel._from_config(config)

    @property
    def flat_token_size(self) -> int:
        """D_flat, the width of one segment token (see [`clap_flat_token_size`])."""
        return clap_flat_token_size(self.config)

    def load_tower_state_dict(self, state_dict: Mapping[str, torch.Tensor], strict: bool = True):
        """Load CLAP audio weights into `self.audio_model`.

        Accepts the keys of a `ClapModel` checkpoint (`audio_model.*`; text tower, projections and logit scales are
        ignored), of this module, or of a `ClapAudioModel` checkpoint (`audio_encoder.*`, no prefix). Returns the
        `load_state_dict` result of the tower.
        """
        if any(key.startswith(TOWER_PREFIX) for key in state_dict):
            tower = {k[len(TOWER_PREFIX) :]: v for k, v in state_dict.items() if k.startswith(TOWER_PREFIX)}
        else:
            tower = dict(state_dict)
        return self.audio_model.load_state_dict(tower, strict=strict)

    def forward(
        self,
        input_features: torch.Tensor,
        segment_mask: torch.Tensor | None = None,
        is_longer: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """
        Args:
            input_features (`torch.FloatTensor` of shape `(batch_size, num_segments, channels, time, num_mel_bins)`):
                Per-segment CLAP features: entry `[b, k]` is what `ClapFeatureExtractor` returns as `input_features[i]`
                for segment k of sample b (`channels` is 1 for `truncation="rand_trunc"`, 4 for `"fusion"`).
            segment_mask (`torch.BoolTensor` of shape `(batch_size, num_segments)`, *optional*):
                True for real segments; padding segments are not encoded and get zero tokens. Defaults to all True.
            is_longer (`torch.BoolTensor` of shape `(batch_size, num_segments)`, *optional*):
                `ClapFeatureExtractor`'s `is_longer` per segment; only read by fused towers (`enable_fusion=True`),
                where it defaults to all False.

        Returns:
            `torch.FloatTensor` of shape `(batch_size, num_segments, flat_token_size)`: each segment's
            `ClapAudioModel.last_hidden_state` (shape `(C, F', T')`) flattened in C order; zeros at padding segments.
        """
        if input_features.dim() != 5:
            raise ValueError(
                "input_features must have shape (batch, segments, channels, time, mel_bins) (one ClapFeatureExtractor "
                f"output per segment); got {tuple(input_features.shape)}."
            )
        batch_size, num_segments = input_features.shape[:2]
        if input_features.shape[-1] != self.config.num_mel_bins:
            raise ValueError(
                f"input_features has {input_features.shape[-1]} mel bins but the CLAP tower expects "
                f"{self.config.num_mel_bins} (ClapFeatureExtractor feature_size)."
            )
        device = input_features.device
        if segment_mask is None:
            segment_mask = torch.ones(batch_size, num_segments, dtype=torch.bool, device=device)
        elif segment_mask.shape != (batch_size, num_segments):
            raise ValueError(
                f"segment_mask has shape {tuple(segment_mask.shape)} but input_features has (batch, segments) = "
                f"{(batch_size, num_segments)}."
            )
        if is_longer is not None and is_longer.shape != (batch_size, num_segments):
            raise ValueError(
                f"is_longer has shape {tuple(is_longer.shape)} but input_features has (batch, segments) = "
                f"{(batch_size, num_segments)}."
            )
        segment_mask = segment_mask.to(device=device, dtype=torch.bool)

        weight = self.audio_model.audio_encoder.patch_embed.proj.weight
        tokens = weight.new_zeros(batch_size, num_segments, self.flat_token_size)  # (B, K, D_flat)
        if not bool(segment_mask.any()):
            return tokens
        features = input_features[segment_mask].to(dtype=weight.dtype)  # (N_valid, C, T, F)
        longer = None
        if self.config.enable_fusion:
            longer = (
                is_longer.to(device=device, dtype=torch.bool)[segment_mask][:, None]
                if is_longer is not None
                else torch.zeros(features.shape[0], 1, dtype=torch.bool, device=device)
            )  # (N_valid, 1)
        hidden_states = self.audio_model(input_features=features, is_longer=longer).last_hidden_state  # (N, C', F', T')
        return tokens.index_put((segment_mask,), hidden_states.flatten(1))


__all__ = ["ClapSegmentEncoder"]
