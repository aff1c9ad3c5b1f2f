"""The causal multi-resolution Q-Former connector of FAVOR / video-SALMONN.

Every resolution cuts the synchronised frames into non-overlapping windows and summarises each window with its own
learned queries; all resolutions share the Q-Former weights. Each layer first runs a frame-level (block-triangular)
self-attention over the window's input features and uses its output as keys/values of that layer's cross-attention
(it is not chained into the next layer: every layer re-reads the window's input features).

Batching: the windows of all resolutions go through ONE call. Windows are grouped into "super-windows" of the
coarsest length; a finer resolution places several of its windows side by side in a super-window and keeps them apart
with block-diagonal masks. Every super-window of every resolution then has the same number of input tokens and of
queries (a config invariant), so resolutions stack along the batch axis without padding, and cost stays linear in
video length.
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

    def forward(self, hidden_states: torch.Tensor, key_value_states: torch.Tensor, attention_mask: torch.Tensor):
        # hidden_states (R, S, Lq, D), key_value_states (R, S, Lk, Dkv), attention_mask additive, broadcastable
        # to (R, S, 1, Lq, Lk)
        *lead, q_len, _ = hidden_states.shape
        k_len = key_value_states.shape[-2]
        query = self.query(hidden_states).view(*lead, q_len, self.num_heads, self.head_dim).transpose(-2, -3)
        key = self.key(key_value_states).view(*lead, k_len, self.num_heads, self.head_dim).transpose(-2, -3)
        value = self.value(key_value_states).view(*lead, k_len, self.num_heads, self.head_dim).transpose(-2, -3)
        context = nn.functional.scaled_dot_product_attention(
            query, key, value, attn_mask=attention_mask, dropout_p=self.dropout if self.training else 0.0
        )  # (R, S, heads, Lq, head_dim)
        context = context.transpose(-2, -3).reshape(*lead, q_len, -1)
        context = nn.functional.dropout(self.dense(context), self.dropout, self.training)
        return self.layer_norm(context + hidden_states)


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
        if self.window_attention is not None:
            window_features = self.window_attention(window_features, window_features, masks.window)
        queries = self.self_attention(queries, queries, masks.queries)
        queries = self.cross_attention(queries, window_features, masks.cross)
        update = self.output(self.activation(self.intermediate(queries)))
        return self.output_layer_norm(nn.functional.dropout(update, self.dropout, self.training) + queries)


@dataclass
class WindowMasks:
    """Additive attention masks of the super-window layout (0 = attend, negative = do not).

    window: (R, 1, 1, L, L) frame-level causal mask inside each window, -inf across windows.
    queries: (R, 1, 1, Q, Q) queries see the queries of their own window only.
    cross: (R, S, 1, Q, L) queries see their window's tokens; padding frames get the dtype's minimum (not -inf),
        so a window made only of padding attends uniformly to its own tokens, as the reference implementation does.
    """

    window: torch.Tensor
    queries: torch.Tensor
    cross: torch.Tensor


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
    frame_index = torch.arange(num_frames, device=device)
    window_masks, query_masks, cross_masks = [], [], []
    for frames_per_window, num_queries in resolutions:
        window_of_frame = frame_index // frames_per_window  # (F,)
        same_window = window_of_frame[:, None] == window_of_frame[None, :]  # (F, F)
        if causal_attention == "future":
            allowed = same_window & (frame_index[None, :] >= frame_index[:, None])
        elif causal_attention == "past":
            allowed = same_window & (frame_index[None, :] <= frame_index[:, None])
        else:
            allowed = same_window
        allowed = allowed.repeat_interleave(tokens_per_frame, 0).repeat_interleave(tokens_per_frame, 1)  # (L, L)
        window_masks.append(_additive(allowed, dtype))

        windows_per_super = num_frames // frames_per_window
        window_of_query = torch.arange(windows_per_super * num_queries, device=device) // num_queries  # (Q,)
        query_masks.append(_additive(window_of_query[:, None] == window_of_query[None, :], dtype))

        own_window = window_of_query[:, None] == window_of_frame[None, :]  # (Q, F)
        cross = _additive(own_window, dtype)  # (Q, F)
        # padding frames get the finite minimum: a window made only of padding must not give NaN
        padding = torch.zeros(frame_valid.shape, dtype=dtype, device=device).masked_fill(
            ~frame_valid, torch.finfo(dtype).min
        )  # (S, F)
        cross = torch.where(own_window[None], padding[:, None, :], cross[None])  # (S, Q, F)
        cross_masks.append(cross.repeat_interleave(tokens_per_frame, -1))  # (S, Q, L)
    return WindowMasks(
        window=torch.stack(window_masks)[:, None, None],
        queries=torch.stack(query_masks)[:, None, None],
        cross=torch.stack(cross_masks)[:, :, None],
    )


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
