"""The causal multi-resolution Q-Former connector of FAVOR / video-SALMONN.

Every resolution cuts the synchronised frames into non-overlapping windows and summarises each window with its own
learned queries; all resolutions share the Q-Former weights. Each layer first runs a frame-level (block-triangular)
self-attention over the window's input features and uses its output as keys/values of that layer's cross-attention
(it is not chained into the next layer: every layer re-reads the window's input features).

Batching: the windows of all resolutions go through ONE call. Windows are grouped into "super-windows" of the
coarsest length; a finer resolution places several of its windows side by side in a super-window. Every super-window
of every resolution then has the same number of input tokens and of queries (a config invariant), so resolutions stack
along a leading axis without padding and all linear layers run once over everything. Only the attention products are
taken per resolution: there each super-window is viewed as its windows, so a window attends within itself at the cost
of its own length (no block-diagonal masks over the whole super-window). Cost stays linear in video length.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from transformers.activations import ACT2FN
from transformers.modeling_layers import GradientCheckpointingLayer


class QFormerAttention(nn.Module):
    """BERT attention block: multi-head attention, output dense, dropout, residual, LayerNorm (no feed-forward)."""

    def __init__(self, hidden_size: int, key_value_size: int, num_heads: int, layer_norm_eps: float, dropout: float):
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = hidden_size // num_heads
        self.dropout = dropout
        self.query = nn.Linear(hidden_size, hidden_size)
        self.key = nn.Linear(key_value_size, hidden_size)
        self.value = nn.Linear(key_value_size, hidden_size)
        self.dense = nn.Linear(hidden_size, hidden_size)
        self.layer_norm = nn.LayerNorm(hidden_size, eps=layer_norm_eps)

    def forward(
        self,
        hidden_states: torch.Tensor,
        key_value_states: torch.Tensor,
        windows_per_row: list[int],
        attention_masks: list[torch.Tensor | None],
    ):
        # hidden_states (R, S, Lq, D), key_value_states (R, S, Lk, Dkv): R resolutions x S super-windows. Resolution r
        # splits each row into windows_per_row[r] windows that attend only within themselves; attention_masks[r] is
        # additive and broadcastable to (S * windows, heads, Lq / windows, Lk / windows), or None.
        *lead, q_len, _ = hidden_states.shape
        query, key, value = self.query(hidden_states), self.key(key_value_states), self.value(key_value_states)
        contexts = []
        for r, (windows, mask) in enumerate(zip(windows_per_row, attention_masks)):
            contexts.append(self._attend(query[r], key[r], value[r], windows, mask))
        context = torch.stack(contexts)  # (R, S, Lq, D)
        context = nn.functional.dropout(self.dense(context), self.dropout, self.training)
        return self.layer_norm(context + hidden_states)

    def _attend(self, query, key, value, windows: int, mask: torch.Tensor | None) -> torch.Tensor:
        # (S, Lq, D), (S, Lk, D) -> (S * windows, heads, L / windows, head_dim) -> attention -> (S, Lq, D)
        rows, q_len, width = query.shape

        def heads(x):
            return x.reshape(rows * windows, x.shape[1] // windows, self.num_heads, self.head_dim).transpose(1, 2)

        context = nn.functional.scaled_dot_product_attention(
            heads(query), heads(key), heads(value), attn_mask=mask, dropout_p=self.dropout if self.training else 0.0
        )
        return context.transpose(1, 2).reshape(rows, q_len, width)


class CausalQFormerLayer(GradientCheckpointingLayer):
    def __init__(self, config):
        super().__init__()
        hidden, joint, heads = config.connector_hidden_size, config.joint_feature_size, config.connector_num_attention_heads
        eps, dropout = config.connector_layer_norm_eps, config.connector_dropout
        self.window_attention = (
            QFormerAttention(joint, joint, heads, eps, dropout) if config.causal_attention != "none" else None
        )
        self.self_attention = QFormerAttention(hidden, hidden, heads, eps, dropout)
        self.cross_attention = QFormerAttention(hidden, joint, heads, eps, dropout)
        self.intermediate = nn.Linear(hidden, config.connector_intermediate_size)
        self.activation = ACT2FN[config.connector_hidden_act]
        self.output = nn.Linear(config.connector_intermediate_size, hidden)
        self.output_layer_norm = nn.LayerNorm(hidden, eps=eps)
        self.dropout = dropout

    def forward(self, queries, window_features, masks: WindowMasks):
        windows = masks.windows_per_row
        if self.window_attention is not None:
            window_features = self.window_attention(window_features, window_features, windows, masks.window)
        queries = self.self_attention(queries, queries, windows, [None] * len(windows))
        queries = self.cross_attention(queries, window_features, windows, masks.cross)
        update = self.output(self.activation(self.intermediate(queries)))
        return self.output_layer_norm(nn.functional.dropout(update, self.dropout, self.training) + queries)


@dataclass
class WindowMasks:
    """How each resolution cuts a super-window into windows, and the additive masks of one window (0 = attend).

    windows_per_row: windows of each resolution in one super-window.
    window: per resolution, (1, 1, Lw, Lw) frame-level causal mask inside a window (None when every token may attend
        every token of its window).
    cross: per resolution, (S * windows, 1, 1, Lw) queries see their window's tokens; padding frames get the dtype's
        minimum (not -inf), so a window made only of padding attends uniformly to its own tokens, as the reference
        implementation does.
    Queries attend to all queries of their own window, so their self-attention needs no mask.
    """

    windows_per_row: list[int]
    window: list[torch.Tensor | None]
    cross: list[torch.Tensor]


def build_window_masks(
    resolutions: list[list[int]],
    tokens_per_frame: int,
    frame_valid: torch.Tensor,
    causal_attention: str,
    dtype: torch.dtype,
) -> WindowMasks:
    """Masks for `frame_valid` (S, F) (super-windows x coarsest-window frames) under every resolution."""
    device = frame_valid.device
    num_frames = frame_valid.shape[1]
    # padding frames get the finite minimum: a window made only of padding must not give NaN
    padding = torch.zeros(frame_valid.shape, dtype=dtype, device=device).masked_fill(
        ~frame_valid, torch.finfo(dtype).min
    )  # (S, F)
    windows_per_row, window_masks, cross_masks = [], [], []
    for frames_per_window, _ in resolutions:
        windows = num_frames // frames_per_window
        windows_per_row.append(windows)
        frame_index = torch.arange(frames_per_window, device=device)
        if causal_attention == "future":
            allowed = frame_index[None, :] >= frame_index[:, None]
        elif causal_attention == "past":
            allowed = frame_index[None, :] <= frame_index[:, None]
        else:
            allowed = None
        if allowed is not None:
            allowed = allowed.repeat_interleave(tokens_per_frame, 0).repeat_interleave(tokens_per_frame, 1)  # (Lw, Lw)
            allowed = _additive(allowed, dtype)[None, None]
        window_masks.append(allowed)
        cross = padding.reshape(-1, frames_per_window).repeat_interleave(tokens_per_frame, -1)  # (S * windows, Lw)
        cross_masks.append(cross[:, None, None, :])
    return WindowMasks(windows_per_row=windows_per_row, window=window_masks, cross=cross_masks)


def _additive(allowed: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    return torch.zeros(allowed.shape, dtype=dtype, device=allowed.device).masked_fill(~allowed, float("-inf"))


class CausalQFormer(nn.Module):
    """Shared Q-Former body: query LayerNorm (BERT embeddings' LayerNorm) and the causal layers."""

    def __init__(self, config):
        super().__init__()
        self.query_layer_norm = nn.LayerNorm(config.connector_hidden_size, eps=config.connector_layer_norm_eps)
        self.dropout = nn.Dropout(config.connector_dropout)
        self.layers = nn.ModuleList([CausalQFormerLayer(config) for _ in range(config.connector_num_hidden_layers)])

    def forward(self, queries: torch.Tensor, window_features: torch.Tensor, masks: WindowMasks) -> torch.Tensor:
        # queries (R, S, Q, H), window_features (R, S, L, F) -> (R, S, Q, H)
        queries = self.dropout(self.query_layer_norm(queries))
        for layer in self.layers:
            queries = layer(queries, window_features, masks)
        return queries


__all__ = ["CausalQFormer", "CausalQFormerLayer", "QFormerAttention", "WindowMasks", "build_window_masks"]
