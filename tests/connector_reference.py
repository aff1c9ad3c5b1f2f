"""The per-resolution loop the batched FAVOR connector replaced, kept as the reference of its tests and benchmark.

`FavorConnector.forward` projects the shared window features once per layer, adds each resolution's projected
position table and computes only the allowed frame blocks of the causal attention (see
`transformers_av.models.favor.qformer`). The functions here compute the same `ConnectorOutput` (attention maps
included, with `output_attentions=True`) from the connector's weights the plain way, without any of those tricks:

* `per_resolution_connector`: what the connector did before (and the official video-SALMONN code does): one
  Q-Former pass per resolution over all of that resolution's windows, each window its own row of `k * N` tokens
  with its position rows added (x + p_r materialised per resolution), the frame-level attention over the whole
  window with a block-triangular additive mask, query tokens expanded to every window; scaled dot-product attention
  through torch's fused kernel (or eager matmul / softmax / matmul when the maps are asked for).
* `per_window_connector`: the same computation called once per window (slowest, simplest).

Both keep the connector's conventions: every sample is zero-padded to the batch's padded frame count (the longest
sample's window plan), windows made only of padding are still computed (they attend uniformly to their own tokens).
Meant for inference in fp32 (`eval()` mode: dropout would make the paths differ); not optimised.
"""

from __future__ import annotations

import torch
from torch import nn

from transformers_av.models.favor.connector import ConnectorOutput, FavorConnector
from transformers_av.models.favor.sync import frame_validity
from transformers_av.models.favor.windows import window_plan
from transformers_av.testing.reference import reference_diversity_loss

_ATTENTION_KINDS = ("window_attentions", "query_attentions", "cross_attentions")


def _attention_block(block, hidden, key_value, mask, output_attentions):
    """BERT attention block from `block`'s weights: LayerNorm(dense(softmax(q k^T / sqrt(d) + mask) v) + hidden)."""
    rows, heads = hidden.shape[0], block.num_heads

    def split(x):  # (W, L, D) -> (W, heads, L, d)
        return x.reshape(rows, x.shape[1], heads, -1).transpose(1, 2)

    query, key, value = split(block.query(hidden)), split(block.key(key_value)), split(block.value(key_value))
    scale = 1.0 / query.shape[-1] ** 0.5
    if output_attentions:
        scores = query @ key.transpose(-1, -2) * scale
        probabilities = torch.softmax(scores if mask is None else scores + mask, dim=-1)
        context = probabilities @ value
    else:
        probabilities = None
        context = nn.functional.scaled_dot_product_attention(query, key, value, attn_mask=mask, scale=scale)
    context = context.transpose(1, 2).reshape(rows, hidden.shape[1], -1)
    return block.layer_norm(block.dense(context) + hidden), probabilities


def _frame_causal_mask(frames, tokens_per_frame, causal_attention, dtype):
    """(L, L) additive block-triangular mask over `frames` frames (None for "none")."""
    if causal_attention == "none":
        return None
    index = torch.arange(frames)
    allowed = index[None, :] >= index[:, None] if causal_attention == "future" else index[None, :] <= index[:, None]
    allowed = allowed.repeat_interleave(tokens_per_frame, 0).repeat_interleave(tokens_per_frame, 1)
    return torch.zeros(allowed.shape, dtype=dtype).masked_fill(~allowed, float("-inf"))


def _qformer(connector, query_tokens, windows, frame_valid, tokens_per_frame, output_attentions):
    """The shared Q-Former over (W, L, F) position-embedded windows with (W, k) frame validity -> (W, n, H) and
    the per-layer (window, query, cross) maps (None when not asked)."""
    config = connector.config
    rows, length, _ = windows.shape
    frames = frame_valid.shape[1]
    causal = _frame_causal_mask(frames, tokens_per_frame, config.causal_attention, windows.dtype)
    padding = torch.zeros(frame_valid.shape, dtype=windows.dtype).masked_fill(~frame_valid, torch.finfo(windows.dtype).min)
    padding = padding.repeat_interleave(tokens_per_frame, -1)[:, None, None, :]  # (W, 1, 1, L)
    qformer = connector.qformer
    queries = qformer.query_layer_norm(query_tokens).expand(rows, -1, -1)
    layer_maps = []
    for layer in qformer.layers:
        key_value, window_map = windows, None
        if layer.window_attention is not None:
            key_value, window_map = _attention_block(layer.window_attention, windows, windows, causal, output_attentions)
        queries, query_map = _attention_block(layer.self_attention, queries, queries, None, output_attentions)
        queries, cross_map = _attention_block(layer.cross_attention, queries, key_value, padding, output_attentions)
        queries = layer.output_layer_norm(layer.output(layer.activation(layer.intermediate(queries))) + queries)
        layer_maps.append((window_map, query_map, cross_map))
    return queries, layer_maps


def _connector(connector: FavorConnector, joint_tokens, frame_counts, output_attentions, window_groups) -> ConnectorOutput:
    """Pad to the batch's window plan, then per resolution run the Q-Former over the windows, `window_groups(W)`
    slices at a time (all at once, or one window per call), and merge like the connector does."""
    config = connector.config
    plans = [window_plan(int(t), config.resolutions) for t in frame_counts.tolist()]
    padded = max(plan.padded_frames for plan in plans)
    joint_tokens = nn.functional.pad(joint_tokens, (0, 0, 0, 0, 0, max(0, padded - joint_tokens.shape[1])))[:, :padded]
    batch_size, _, tokens_per_frame, width = joint_tokens.shape
    frame_valid = frame_validity(frame_counts, padded)
    outputs, maps = [], []
    for (k, _), query_tokens in zip(config.resolutions, connector.query_tokens):
        length = k * tokens_per_frame
        windows = connector.layer_norm(joint_tokens.reshape(-1, length, width))
        windows = windows + connector.position_embedding(torch.arange(length))
        valid = frame_valid.reshape(-1, k)
        runs = [
            _qformer(connector, query_tokens, windows[group], valid[group], tokens_per_frame, output_attentions)
            for group in window_groups(windows.shape[0])
        ]
        out = torch.cat([queries for queries, _ in runs])
        outputs.append(out.reshape(batch_size, -1, out.shape[-1]))
        if output_attentions:  # per layer, the (window, query, cross) maps of all windows: the runs joined by rows
            run_maps = [layer_maps for _, layer_maps in runs]
            maps.append([
                tuple(
                    None if run_maps[0][layer][kind] is None else torch.cat([m[layer][kind] for m in run_maps])
                    for kind in range(len(_ATTENTION_KINDS))
                )
                for layer in range(len(run_maps[0]))
            ])
    if config.resolution_merge == "concat":
        embeds = connector.projection(torch.cat(outputs, dim=-1))
    else:
        embeds = sum(projection(out) for projection, out in zip(connector.projections, outputs))
    attention_maps = {}
    if output_attentions:  # per kind and layer, one map per resolution (None for layers without that block)
        for kind, name in enumerate(_ATTENTION_KINDS):
            attention_maps[name] = tuple(
                None if maps[0][layer][kind] is None else tuple(m[layer][kind] for m in maps)
                for layer in range(config.connector_num_hidden_layers)
            )
    return ConnectorOutput(
        embeds=embeds,
        token_counts=torch.tensor([plan.num_tokens for plan in plans]),
        resolution_outputs=outputs,
        diversity_loss=reference_diversity_loss(config, outputs, plans),
        **attention_maps,
    )


def per_resolution_connector(connector, joint_tokens, frame_counts, output_attentions: bool = False) -> ConnectorOutput:
    """One Q-Former pass per resolution over all of its windows (the connector's former layout)."""
    return _connector(connector, joint_tokens, frame_counts, output_attentions, lambda rows: [slice(None)])


def per_window_connector(connector, joint_tokens, frame_counts, output_attentions: bool = False) -> ConnectorOutput:
    """One Q-Former pass per window of every resolution and sample."""
    return _connector(
        connector, joint_tokens, frame_counts, output_attentions, lambda rows: [slice(w, w + 1) for w in range(rows)]
    )
