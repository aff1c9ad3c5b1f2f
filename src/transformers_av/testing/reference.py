"""Slow, obviously-correct reference paths of the FAVOR connector, for tests and benchmarks.

`FavorConnector.forward` runs every window of every resolution in ONE batched Q-Former call (the "super-window"
layout, see `transformers_av.models.favor.qformer`). The functions here compute the same `ConnectorOutput` (attention
maps included, with `output_attentions=True`) from the connector's own modules without that trick:

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
from ..models.favor.qformer import CausalQFormerOutput, build_window_masks
from ..models.favor.sync import frame_validity
from ..models.favor.windows import window_plan


def randomized_connector(config, seed: int = 0) -> FavorConnector:
    """A `FavorConnector` of `config` in eval mode with every weight random (normal, std 0.05; query tokens std 0.5;
    LayerNorm weights around 1): the zero-initialised query tokens and unit LayerNorms of a fresh model would hide
    bugs from tests."""
    torch.manual_seed(seed)
    connector = FavorConnector(config).eval()
    with torch.no_grad():
        for name, param in connector.named_parameters():
            param.normal_(0.0, 0.5 if "query_tokens" in name else 0.05)
            if "layer_norm" in name and name.endswith("weight"):
                param.add_(1.0)
    return connector


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


_ATTENTION_KINDS = ("window_attentions", "query_attentions", "cross_attentions")


def _merge_maps(runs: list[CausalQFormerOutput], kind: str, combine) -> tuple:
    """Per layer, `combine` the one-resolution maps of `kind` of several Q-Former runs (None where a layer has none)."""
    layers = zip(*(getattr(run, kind) for run in runs))
    return tuple(None if maps[0] is None else combine([m[0] for m in maps]) for maps in layers)


def _finish(connector: FavorConnector, outputs: list[torch.Tensor], plans, runs=None) -> ConnectorOutput:
    """Merge per-resolution (B, C_max, H) outputs into LLM-width embeds and compute the diversity loss; `runs` (one
    Q-Former output per resolution, its windows as rows) give the attention maps."""
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
        **({kind: _merge_maps(runs, kind, tuple) for kind in _ATTENTION_KINDS} if runs is not None else {}),
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


def _resolution_by_resolution(
    connector: FavorConnector, joint_tokens, frame_counts, run_windows, output_attentions: bool
) -> ConnectorOutput:
    """Cut the frames into each resolution's windows and let `run_windows(query, features, masks_for)` turn them into
    a `CausalQFormerOutput` of (1, W, n, H) outputs (and maps with the W windows as rows); `masks_for(rows)` builds
    the window masks of `features[rows]`."""
    config = connector.config
    joint_tokens, frame_valid, plans = _prepare(connector, joint_tokens, frame_counts)
    batch_size, _, tokens_per_frame, _ = joint_tokens.shape
    outputs, runs = [], []
    for (k, n), query in zip(config.resolutions, connector.query_tokens):
        features, valid = _windows(connector, joint_tokens, frame_valid, k)  # (W, k*N, F), (W, k)

        def masks_for(rows, k=k, n=n, valid=valid, dtype=features.dtype):
            return build_window_masks([[k, n]], tokens_per_frame, valid[rows], config.causal_attention, dtype)

        run = run_windows(query, features, masks_for)
        outputs.append(run.last_hidden_state[0].reshape(batch_size, -1, run.last_hidden_state.shape[-1]))
        runs.append(run)
    return _finish(connector, outputs, plans, runs if output_attentions else None)


def per_resolution_connector(
    connector: FavorConnector, joint_tokens: torch.Tensor, frame_counts: torch.Tensor, output_attentions: bool = False
) -> ConnectorOutput:
    """Official-style reference: one Q-Former call per resolution over all of that resolution's windows."""

    def run_windows(query, features, masks_for):
        queries = query.expand(features.shape[0], -1, -1)[None]  # (1, W, n, H)
        return connector.qformer(queries, features[None], masks_for(slice(None)), output_attentions)

    return _resolution_by_resolution(connector, joint_tokens, frame_counts, run_windows, output_attentions)


def per_window_connector(
    connector: FavorConnector, joint_tokens: torch.Tensor, frame_counts: torch.Tensor, output_attentions: bool = False
) -> ConnectorOutput:
    """Slowest reference: a Python loop calling the Q-Former once per window of every resolution and sample."""

    def run_windows(query, features, masks_for):
        runs = [
            connector.qformer(query[None], features[w][None, None], masks_for(slice(w, w + 1)), output_attentions)
            for w in range(features.shape[0])
        ]
        maps = {}
        if output_attentions:
            maps = {kind: _merge_maps(runs, kind, lambda m: (torch.cat(m),)) for kind in _ATTENTION_KINDS}
        return CausalQFormerOutput(last_hidden_state=torch.cat([run.last_hidden_state for run in runs], dim=1), **maps)

    return _resolution_by_resolution(connector, joint_tokens, frame_counts, run_windows, output_attentions)


__all__ = ["per_resolution_connector", "per_window_connector", "randomized_connector", "reference_diversity_loss"]
