"""Slow, obviously-correct reference paths of the FAVOR connector, for tests and benchmarks.

`FavorConnector.forward` runs every window of every resolution in ONE batched Q-Former call (the "super-window"
layout with block-diagonal masks, see `transformers_av.models.favor.qformer`). The functions here compute the same
`ConnectorOutput` from the connector's own modules without that trick:

* `per_resolution_connector`: one Q-Former call per resolution, batching that resolution's windows (each window is
  its own batch row of `k * tokens_per_frame` tokens), as the official video-SALMONN implementation does;
* `per_window_connector`: a Python loop with one Q-Former call per window (slowest, simplest).

Both keep the batched path's conventions: every sample is zero-padded to the batch's padded frame count (the longest
sample's window plan), windows made only of padding are still computed (they attend uniformly to their own tokens),
so the outputs have the same shapes and values as `FavorConnector.forward`. They are meant for inference in fp32
(`eval()` mode: dropout would make the paths differ) and are not optimised.
"""

from __future__ import annotations

import torch
from torch import nn

from ..models.favor.connector import ConnectorOutput, FavorConnector
from ..models.favor.qformer import build_window_masks
from ..models.favor.sync import frame_validity
from ..models.favor.windows import window_plan


def _prepare(connector: FavorConnector, joint_tokens: torch.Tensor, frame_counts: torch.Tensor):
    """Pad/trim (B, T, N, F) to the batch's padded frame count; return tokens, (B, T') frame validity and plans."""
    resolutions = connector.config.resolutions
    plans = [window_plan(int(t), resolutions) for t in frame_counts.tolist()]
    padded = max(plan.padded_frames for plan in plans)
    num_frames = joint_tokens.shape[1]
    if padded > num_frames:
        joint_tokens = nn.functional.pad(joint_tokens, (0, 0, 0, 0, 0, padded - num_frames))
    joint_tokens = joint_tokens[:, :padded]
    frame_valid = frame_validity(frame_counts.to(joint_tokens.device), padded)
    return joint_tokens, frame_valid, plans


def _windows(connector: FavorConnector, joint_tokens: torch.Tensor, frame_valid: torch.Tensor, k: int):
    """(B, T', N, F) -> LayerNorm'd, position-embedded windows (B * T'/k, k*N, F) and their frame validity."""
    batch_size, padded, tokens_per_frame, width = joint_tokens.shape
    num_windows = batch_size * (padded // k)
    features = connector.layer_norm(joint_tokens.reshape(num_windows, k * tokens_per_frame, width))
    positions = torch.arange(k * tokens_per_frame, device=features.device)
    features = features + connector.position_embedding(positions)
    return features, frame_valid.reshape(num_windows, k)


def _finish(connector: FavorConnector, outputs: list[torch.Tensor], plans) -> ConnectorOutput:
    """Merge per-resolution (B, C_max, H) outputs into LLM-width embeds and compute the diversity loss."""
    if connector.config.resolution_merge == "concat":
        embeds = connector.projection(torch.cat(outputs, dim=-1))
    else:
        embeds = sum(proj(out) for proj, out in zip(connector.projections, outputs))
    token_counts = torch.tensor([plan.num_tokens for plan in plans], device=embeds.device)
    return ConnectorOutput(
        embeds=embeds,
        token_counts=token_counts,
        resolution_outputs=outputs,
        diversity_loss=reference_diversity_loss(connector.config, outputs, plans),
    )


def reference_diversity_loss(config, resolution_outputs: list[torch.Tensor], plans) -> torch.Tensor:
    """Diversity loss computed window by window: mean off-diagonal cosine similarity between the queries of each
    real window (those of a sample's own window plan), over all samples, averaged over
    `config.diversity_loss_resolutions`."""
    losses = []
    for r in config.diversity_loss_resolutions:
        num_queries = config.resolutions[r][1]
        total, count = resolution_outputs[r].new_zeros(()), 0
        for out, plan in zip(resolution_outputs[r], plans):
            for w in range(plan.windows[r]):
                queries = out[w * num_queries : (w + 1) * num_queries]  # (n, H)
                unit = nn.functional.normalize(queries, dim=-1)
                cosine = unit @ unit.T
                total = total + cosine.sum() - cosine.diagonal().sum()
                count += num_queries * (num_queries - 1)
        losses.append(total / (count or 1))
    return torch.stack(losses).mean()


def _resolution_by_resolution(connector: FavorConnector, joint_tokens, frame_counts, run_windows) -> ConnectorOutput:
    """Cut the frames into each resolution's windows and let `run_windows(query, features, masks_for)` turn them into
    (W, n, H) outputs; `masks_for(rows)` builds the window masks of `features[rows]`."""
    config = connector.config
    joint_tokens, frame_valid, plans = _prepare(connector, joint_tokens, frame_counts)
    batch_size, _, tokens_per_frame, _ = joint_tokens.shape
    outputs = []
    for (k, n), query in zip(config.resolutions, connector.query_tokens):
        features, valid = _windows(connector, joint_tokens, frame_valid, k)  # (W, k*N, F), (W, k)

        def masks_for(rows, k=k, n=n, valid=valid, dtype=features.dtype):
            return build_window_masks([[k, n]], tokens_per_frame, valid[rows], config.causal_attention, dtype)

        out = run_windows(query, features, masks_for)  # (W, n, H)
        outputs.append(out.reshape(batch_size, -1, out.shape[-1]))
    return _finish(connector, outputs, plans)


def per_resolution_connector(
    connector: FavorConnector, joint_tokens: torch.Tensor, frame_counts: torch.Tensor
) -> ConnectorOutput:
    """Official-style reference: one Q-Former call per resolution over all of that resolution's windows."""

    def run_windows(query, features, masks_for):
        queries = query.expand(features.shape[0], -1, -1)[None]  # (1, W, n, H)
        return connector.qformer(queries, features[None], masks_for(slice(None)))[0]

    return _resolution_by_resolution(connector, joint_tokens, frame_counts, run_windows)


def per_window_connector(
    connector: FavorConnector, joint_tokens: torch.Tensor, frame_counts: torch.Tensor
) -> ConnectorOutput:
    """Slowest reference: a Python loop calling the Q-Former once per window of every resolution and sample."""

    def run_windows(query, features, masks_for):
        return torch.stack([
            connector.qformer(query[None], features[w][None, None], masks_for(slice(w, w + 1)))[0, 0]  # (n, H)
            for w in range(features.shape[0])
        ])

    return _resolution_by_resolution(connector, joint_tokens, frame_counts, run_windows)


__all__ = ["per_resolution_connector", "per_window_connector", "reference_diversity_loss"]
