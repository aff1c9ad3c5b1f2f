"""The FAVOR / video-SALMONN connector: synchronised frames -> multi-resolution causal Q-Former -> LLM-width tokens."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .qformer import CausalQFormer, QFormerWindows, build_key_padding_masks
from .sync import frame_validity
from .windows import window_plan


@dataclass
class ConnectorOutput:
    """embeds: (B, C_max, D) LLM-width tokens; token_counts: (B,) tokens that belong to each sample;
    resolution_outputs: per resolution (B, C_max, H) Q-Former outputs (window-major, then query);
    diversity_loss: scalar over the configured resolutions' real windows.
    window_attentions, query_attentions, cross_attentions: with `output_attentions`, per Q-Former layer a tuple of
    one map per resolution r, rows = the B * W_r windows of the batch (sample-major, windows in time order, the
    padded windows included): (B * W_r, heads, L_r, L_r) frame-level block over the window features (None without
    causal attention), (B * W_r, heads, N_r, N_r) query self-attention, (B * W_r, heads, N_r, L_r) cross-attention;
    L_r = k_r * tokens per frame, N_r queries per window."""

    embeds: torch.Tensor
    token_counts: torch.Tensor
    resolution_outputs: list[torch.Tensor]
    diversity_loss: torch.Tensor
    window_attentions: tuple | None = None
    query_attentions: tuple | None = None
    cross_attentions: tuple | None = None


class FavorConnector(nn.Module):
    """Owns every trainable connector weight: audio input projections, joint LayerNorm, in-window position table,
    per-resolution query tokens, the shared causal Q-Former and the projection into the LLM."""

    def __init__(self, config):
        super().__init__()
        self.config = config
        visual = config.visual_feature_size
        joint = config.joint_feature_size
        hidden = config.connector_hidden_size
        self.speech_projection = nn.Linear(config.speech_config.d_model, visual)
        self.audio_projection = (
            nn.Linear(config.audio_config.encoder_embed_dim, visual) if config.audio_config is not None else None
        )
        self.layer_norm = nn.LayerNorm(joint, eps=config.joint_layer_norm_eps)
        self.position_embedding = nn.Embedding(config.max_window_positions, joint)
        self.query_tokens = nn.ParameterList([nn.Parameter(torch.zeros(1, n, hidden)) for _, n in config.resolutions])
        self.qformer = CausalQFormer(config)
        text_width = config.text_config.hidden_size
        if config.resolution_merge == "concat":
            self.projection = nn.Linear(hidden * len(config.resolutions), text_width)
        else:
            self.projections = nn.ModuleList([nn.Linear(hidden, text_width) for _ in config.resolutions])

    def forward(
        self, joint_tokens: torch.Tensor, frame_counts: torch.Tensor, output_attentions: bool = False
    ) -> ConnectorOutput:
        """joint_tokens: (B, T, N, F) synchronised tokens; frame_counts: (B,) frames with content per sample.
        `output_attentions` returns the Q-Former's attention maps (computed by the eager path)."""
        config = self.config
        resolutions = config.resolutions
        batch_size, num_frames, tokens_per_frame, width = joint_tokens.shape
        plans = [window_plan(int(t), resolutions) for t in frame_counts.tolist()]
        padded = max(plan.padded_frames for plan in plans)
        if padded > num_frames and batch_size > 1:  # samples follow each other: each one is padded in place
            joint_tokens = nn.functional.pad(joint_tokens, (0, 0, 0, 0, 0, padded - num_frames))
        joint_tokens = joint_tokens[:, :padded]

        # (B, T', N, F) -> (B * T' * N, F), a view: every resolution reads the same tokens, which the Q-Former
        # LayerNorms one group of windows at a time (and zero-pads, for one video, in the group where they end)
        features = joint_tokens.reshape(-1, width)
        frame_valid = frame_validity(frame_counts.to(joint_tokens.device), padded)  # (B, T')
        frames_per_window = [k for k, _ in resolutions]
        window_lengths = [k * tokens_per_frame for k in frames_per_window]
        windows = QFormerWindows(
            features=features,
            # each resolution numbers tokens from 0 inside its own window
            positions=[self.position_embedding(torch.arange(length, device=features.device)) for length in window_lengths],
            window_lengths=window_lengths,
            key_padding=build_key_padding_masks(frames_per_window, tokens_per_frame, frame_valid, features.dtype),
            tokens_per_frame=tokens_per_frame,
            causal_attention=config.causal_attention,
            num_tokens=batch_size * padded * tokens_per_frame,
        )
        qformer_output = self.qformer(list(self.query_tokens), windows, output_attentions, feature_norm=self.layer_norm)
        # (W_r, N_r, H) -> (B, C_max, H): W_r * N_r = B * C_max for every resolution
        outputs = [out.reshape(batch_size, -1, out.shape[-1]) for out in qformer_output.last_hidden_state]
        if config.masked_resolutions:  # video-SALMONN Table 5: one resolution's output queries zeroed
            outputs = [torch.zeros_like(out) if r in config.masked_resolutions else out for r, out in enumerate(outputs)]

        if config.resolution_merge == "concat":
            embeds = self.projection(torch.cat(outputs, dim=-1))
        else:
            embeds = sum(proj(out) for proj, out in zip(self.projections, outputs))
        token_counts = torch.tensor([plan.num_tokens for plan in plans], device=embeds.device)
        return ConnectorOutput(
            embeds=embeds,
            token_counts=token_counts,
            resolution_outputs=outputs,
            diversity_loss=self._diversity_loss(outputs, plans),
            window_attentions=qformer_output.window_attentions,
            query_attentions=qformer_output.query_attentions,
            cross_attentions=qformer_output.cross_attentions,
        )

    def _diversity_loss(self, outputs: list[torch.Tensor], plans) -> torch.Tensor:
        """Mean off-diagonal cosine similarity between the queries of a window, over the real windows of the
        configured resolutions (the official definition, averaged over resolutions)."""
        losses = []
        for r in self.config.diversity_loss_resolutions:
            num_queries = self.config.resolutions[r][1]
            windows = [out[: plan.windows[r] * num_queries].reshape(plan.windows[r], num_queries, -1)
                       for out, plan in zip(outputs[r], plans)]
            windows = torch.cat(windows)  # (n_windows, N, H)
            norms = windows.norm(dim=-1)
            cosine = windows @ windows.transpose(1, 2) / (norms[:, :, None] * norms[:, None, :] + 1e-9)
            off_diagonal = cosine.sum() - cosine.diagonal(dim1=1, dim2=2).sum()
            losses.append(off_diagonal / (windows.shape[0] * num_queries * (num_queries - 1) or 1))
        return torch.stack(losses).mean()


__all__ = ["FavorConnector", "ConnectorOutput"]
