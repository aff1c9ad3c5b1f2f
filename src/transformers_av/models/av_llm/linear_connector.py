"""Linear connector of the Audio-Visual LLM (Shu et al., 2023): three linear projections into the LLM width.

Temporal (per-frame [CLS]) tokens, spatial (time-pooled patch) tokens and audio (flattened CLAP segment) tokens each
have their own linear projection. A sample's LLM-width tokens are laid out as

    [ T_valid temporal | P spatial | K_valid audio ]

left-aligned in a `(B, C_max, D_llm)` tensor and zero-padded on the right. A sample has visual tokens only if it has
at least one valid frame (then all P spatial tokens come with its temporal ones) and audio tokens only if it has at
least one valid segment. [`linear_connector_token_count`] is the one function that says how many tokens a sample gets;
the processor uses it to expand the placeholder and the connector uses it to size its output.
"""

from __future__ import annotations

import torch
from torch import nn

from .token_counts import linear_connector_token_count


class LinearAudioVisualConnector(nn.Module):
    """Projects temporal, spatial and audio tokens to the LLM width and lays them out per sample.

    Args:
        vision_hidden_size (`int`, *optional*):
            Dv, width of the temporal and spatial tokens (1024 for CLIP ViT-L/14). `None` builds no visual projections.
        audio_hidden_size (`int`, *optional*):
            Da, width of an audio token ([`clap_flat_token_size`]). `None` builds no audio projection.
        text_hidden_size (`int`):
            D_llm, the LLM's hidden size.
        bias (`bool`, *optional*, defaults to `True`):
            Whether the projections have a bias.
    """

    def __init__(
        self,
        vision_hidden_size: int | None,
        audio_hidden_size: int | None,
        text_hidden_size: int,
        bias: bool = True,
    ):
        super().__init__()
        if vision_hidden_size is None and audio_hidden_size is None:
            raise ValueError("LinearAudioVisualConnector needs vision_hidden_size or audio_hidden_size (or both).")
        self.vision_hidden_size = vision_hidden_size
        self.audio_hidden_size = audio_hidden_size
        self.text_hidden_size = text_hidden_size
        if vision_hidden_size is not None:
            self.temporal_projection = nn.Linear(vision_hidden_size, text_hidden_size, bias=bias)
            self.spatial_projection = nn.Linear(vision_hidden_size, text_hidden_size, bias=bias)
        else:
            self.temporal_projection = self.spatial_projection = None
        self.audio_projection = (
            nn.Linear(audio_hidden_size, text_hidden_size, bias=bias) if audio_hidden_size is not None else None
        )

    def _projection_weight(self) -> torch.Tensor:
        layer = self.temporal_projection if self.temporal_projection is not None else self.audio_projection
        return layer.weight

    def forward(
        self,
        temporal_tokens: torch.Tensor | None = None,
        frame_mask: torch.Tensor | None = None,
        spatial_tokens: torch.Tensor | None = None,
        audio_tokens: torch.Tensor | None = None,
        segment_mask: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """
        Args:
            temporal_tokens (`torch.FloatTensor` of shape `(batch_size, num_frames, vision_hidden_size)`, *optional*):
                Per-frame tokens; entries at invalid frames are ignored. Given together with `spatial_tokens`.
            frame_mask (`torch.BoolTensor` of shape `(batch_size, num_frames)`, *optional*):
                Valid frames; defaults to all True. A sample without valid frames gets no visual tokens.
            spatial_tokens (`torch.FloatTensor` of shape `(batch_size, num_patches, vision_hidden_size)`, *optional*):
                Time-pooled patch tokens.
            audio_tokens (`torch.FloatTensor` of shape `(batch_size, num_segments, audio_hidden_size)`, *optional*):
                Flattened audio segment tokens; entries at invalid segments are ignored.
            segment_mask (`torch.BoolTensor` of shape `(batch_size, num_segments)`, *optional*):
                Valid segments; defaults to all True. A sample without valid segments gets no audio tokens.

        Returns:
            `tuple(torch.FloatTensor, torch.LongTensor)`: `embeds` of shape `(batch_size, C_max, text_hidden_size)`
            (each sample's `[temporal | spatial | audio]` tokens left-aligned, zeros after them) and `token_counts`
            of shape `(batch_size,)`, equal to [`linear_connector_token_count`] for every sample.
        """
        if (temporal_tokens is None) != (spatial_tokens is None):
            raise ValueError("temporal_tokens and spatial_tokens must be given together (both or neither).")
        visual_given, audio_given = temporal_tokens is not None, audio_tokens is not None
        if not visual_given and not audio_given:
            raise ValueError("LinearAudioVisualConnector needs temporal/spatial tokens, audio tokens, or both.")
        if visual_given and self.temporal_projection is None:
            raise ValueError("temporal/spatial tokens were given but the connector has no visual projections.")
        if audio_given and self.audio_projection is None:
            raise ValueError("audio_tokens were given but the connector has no audio projection.")

        weight = self._projection_weight()
        device = weight.device
        batch_size = temporal_tokens.shape[0] if visual_given else audio_tokens.shape[0]
        num_patches = 0
        frame_counts = torch.zeros(batch_size, dtype=torch.long, device=device)
        segment_counts = torch.zeros(batch_size, dtype=torch.long, device=device)

        if visual_given:
            if temporal_tokens.dim() != 3 or spatial_tokens.dim() != 3:
                raise ValueError(
                    "temporal_tokens must be (batch, frames, width) and spatial_tokens (batch, patches, width); got "
                    f"{tuple(temporal_tokens.shape)} and {tuple(spatial_tokens.shape)}."
                )
            num_frames, num_patches = temporal_tokens.shape[1], spatial_tokens.shape[1]
            if spatial_tokens.shape[0] != batch_size:
                raise ValueError(
                    f"spatial_tokens has batch size {spatial_tokens.shape[0]}, temporal_tokens {batch_size}."
                )
            for name, tokens in (("temporal_tokens", temporal_tokens), ("spatial_tokens", spatial_tokens)):
                if tokens.shape[-1] != self.vision_hidden_size:
                    raise ValueError(
                        f"{name} has width {tokens.shape[-1]} but the connector expects {self.vision_hidden_size}."
                    )
            if frame_mask is None:
                frame_mask = torch.ones(batch_size, num_frames, dtype=torch.bool, device=device)
            elif frame_mask.shape != (batch_size, num_frames):
                raise ValueError(
                    f"frame_mask has shape {tuple(frame_mask.shape)} but temporal_tokens has (batch, frames) = "
                    f"{(batch_size, num_frames)}."
                )
            frame_mask = frame_mask.to(device=device, dtype=torch.bool)
            frame_counts = frame_mask.sum(dim=1)

        if audio_given:
            if audio_tokens.dim() != 3 or audio_tokens.shape[0] != batch_size:
                raise ValueError(
                    f"audio_tokens must be (batch={batch_size}, segments, width); got {tuple(audio_tokens.shape)}."
                )
            if audio_tokens.shape[-1] != self.audio_hidden_size:
                raise ValueError(
                    f"audio_tokens has width {audio_tokens.shape[-1]} but the connector expects "
                    f"{self.audio_hidden_size}."
                )
            num_segments = audio_tokens.shape[1]
            if segment_mask is None:
                segment_mask = torch.ones(batch_size, num_segments, dtype=torch.bool, device=device)
            elif segment_mask.shape != (batch_size, num_segments):
                raise ValueError(
                    f"segment_mask has shape {tuple(segment_mask.shape)} but audio_tokens has (batch, segments) = "
                    f"{(batch_size, num_segments)}."
                )
            segment_mask = segment_mask.to(device=device, dtype=torch.bool)
            segment_counts = segment_mask.sum(dim=1)

        has_visual = frame_counts > 0  # (B,)
        has_audio = segment_counts > 0  # (B,)
        token_counts = torch.tensor(
            [
                linear_connector_token_count(t, num_patches, k, visual=v, audio=a)
                for t, k, v, a in zip(
                    frame_counts.tolist(), segment_counts.tolist(), has_visual.tolist(), has_audio.tolist()
                )
            ],
            dtype=torch.long,
            device=device,
        )
        max_count = int(token_counts.max()) if batch_size else 0
        embeds = weight.new_zeros(batch_size, max_count, self.text_hidden_size)  # (B, C_max, D_llm)
        visual_length = (frame_counts + num_patches) * has_visual  # (B,) tokens before the audio block

        if visual_given and bool(has_visual.any()):
            # temporal: the j-th valid frame of sample b goes to position j
            batch_index = frame_mask.nonzero()[:, 0]
            position = (frame_mask.cumsum(dim=1) - 1)[frame_mask]
            temporal = self.temporal_projection(temporal_tokens.to(device=device, dtype=weight.dtype)[frame_mask])
            embeds = embeds.index_put((batch_index, position), temporal)  # temporal: (N_frames, D_llm)
            # spatial: the P patch tokens follow the sample's temporal tokens
            visual_samples = has_visual.nonzero()[:, 0]  # (B_vis,)
            spatial = self.spatial_projection(spatial_tokens.to(device=device, dtype=weight.dtype)[visual_samples])
            patch_position = frame_counts[visual_samples, None] + torch.arange(num_patches, device=device)  # (B_vis, P)
            embeds = embeds.index_put((visual_samples[:, None].expand_as(patch_position), patch_position), spatial)

        if audio_given and bool(has_audio.any()):
            batch_index = segment_mask.nonzero()[:, 0]
            position = visual_length[batch_index] + (segment_mask.cumsum(dim=1) - 1)[segment_mask]
            audio = self.audio_projection(audio_tokens.to(device=device, dtype=weight.dtype)[segment_mask])
            embeds = embeds.index_put((batch_index, position), audio)  # audio: (N_segments, D_llm)

        return embeds, token_counts


__all__ = ["LinearAudioVisualConnector"]
