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

import math
from dataclasses import dataclass

import torch
from torch import nn
from transformers.activations import ACT2FN
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.modeling_outputs import ModelOutput
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS
from transformers.utils import logging

logger = logging.get_logger(__name__)

# kernels that cannot add an arbitrary (block-triangular or padding) float mask to the scores of every head
_MASKLESS_IMPLEMENTATIONS = ("flash", "flex")


def eager_attention_forward(
    module: nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float,
    dropout: float = 0.0,
    **kwargs,
) -> tuple[torch.Tensor, torch.Tensor]:
    """softmax(query key^T * scaling + attention_mask) value, with the probabilities as attention map.

    query (N, heads, Lq, d), key/value (N, heads, Lk, d), attention_mask additive and broadcastable to
    (N, heads, Lq, Lk). Returns the context as (N, Lq, heads, d) (the layout of every attention interface) and the
    attention probabilities (N, heads, Lq, Lk) before dropout."""
    scores = torch.matmul(query, key.transpose(-1, -2)) * scaling
    if attention_mask is not None:
        scores = scores + attention_mask
    probabilities = nn.functional.softmax(scores, dim=-1)
    dropped = nn.functional.dropout(probabilities, p=dropout, training=module.training)
    return torch.matmul(dropped, value).transpose(1, 2).contiguous(), probabilities


def qformer_attention_function(config, output_attentions: bool = False):
    """The attention function of `config._attn_implementation` for the connector Q-Former.

    The connector runs the implementation the composite model resolved, with three exceptions: `output_attentions`
    needs the probabilities, so it runs eager; a standalone connector (config never resolved by a model) runs sdpa,
    the default a model would pick; flash / flex kernels (chosen for the LLM) cannot add the Q-Former's additive
    masks, so the connector runs sdpa instead."""
    if output_attentions:
        return eager_attention_forward
    implementation = config._attn_implementation or "sdpa"
    if any(name in implementation for name in _MASKLESS_IMPLEMENTATIONS):
        logger.warning_once(
            f"The FAVOR connector Q-Former cannot run attn_implementation={implementation!r} (its block-causal and "
            "padding masks are additive float masks); it uses 'sdpa' while the rest of the model keeps "
            f"{implementation!r}."
        )
        implementation = "sdpa"
    return ALL_ATTENTION_FUNCTIONS.get_interface(implementation, eager_attention_forward)


class QFormerAttention(nn.Module):
    """BERT attention block: multi-head attention, output dense, dropout, residual, LayerNorm (no feed-forward).

    The attention product goes through the attention interface selected by `config._attn_implementation` (see
    [`qformer_attention_function`])."""

    is_causal = False  # causality comes from the window masks, never from the kernel's own causal flag

    def __init__(self, config, hidden_size: int, key_value_size: int):
        super().__init__()
        self.config = config
        self.num_heads = config.connector_num_attention_heads
        self.head_dim = hidden_size // self.num_heads
        # the value torch's scaled_dot_product_attention uses by default (1 / sqrt, not ** -0.5: they differ in the
        # last bit for some widths)
        self.scaling = 1.0 / math.sqrt(self.head_dim)
        self.dropout = config.connector_dropout
        self.query = nn.Linear(hidden_size, hidden_size)
        self.key = nn.Linear(key_value_size, hidden_size)
        self.value = nn.Linear(key_value_size, hidden_size)
        self.dense = nn.Linear(hidden_size, hidden_size)
        self.layer_norm = nn.LayerNorm(hidden_size, eps=config.connector_layer_norm_eps)

    def forward(
        self,
        hidden_states: torch.Tensor,
        key_value_states: torch.Tensor,
        windows_per_row: list[int],
        attention_masks: list[torch.Tensor | None],
        output_attentions: bool = False,
    ) -> tuple[torch.Tensor, list[torch.Tensor] | None]:
        """hidden_states (R, S, Lq, D), key_value_states (R, S, Lk, Dkv): R resolutions x S super-windows. Resolution
        r splits each row into windows_per_row[r] windows that attend only within themselves; attention_masks[r] is
        additive and broadcastable to (S * windows, heads, Lq / windows, Lk / windows), or None.

        Returns the block's output (R, S, Lq, D) and, with `output_attentions`, one attention map per resolution,
        (S * windows_per_row[r], heads, Lq / windows, Lk / windows), windows in time order within each row."""
        query, key, value = self.query(hidden_states), self.key(key_value_states), self.value(key_value_states)
        attention = qformer_attention_function(self.config, output_attentions)
        contexts, maps = [], []
        for r, (windows, mask) in enumerate(zip(windows_per_row, attention_masks)):
            rows, q_len, width = query[r].shape

            def heads(x, windows=windows):
                # (S, L, D) -> (S * windows, heads, L / windows, head_dim)
                return x.reshape(rows * windows, x.shape[1] // windows, self.num_heads, self.head_dim).transpose(1, 2)

            context, weights = attention(
                self,
                heads(query[r]),
                heads(key[r]),
                heads(value[r]),
                mask,
                dropout=self.dropout if self.training else 0.0,
                scaling=self.scaling,
            )
            contexts.append(context.reshape(rows, q_len, width))
            maps.append(weights)
        context = torch.stack(contexts)  # (R, S, Lq, D)
        context = nn.functional.dropout(self.dense(context), self.dropout, self.training)
        return self.layer_norm(context + hidden_states), (maps if output_attentions else None)


class CausalQFormerLayer(GradientCheckpointingLayer):
    def __init__(self, config):
        super().__init__()
        hidden, joint = config.connector_hidden_size, config.joint_feature_size
        self.window_attention = QFormerAttention(config, joint, joint) if config.causal_attention != "none" else None
        self.self_attention = QFormerAttention(config, hidden, hidden)
        self.cross_attention = QFormerAttention(config, hidden, joint)
        self.intermediate = nn.Linear(hidden, config.connector_intermediate_size)
        self.activation = ACT2FN[config.connector_hidden_act]
        self.output = nn.Linear(config.connector_intermediate_size, hidden)
        self.output_layer_norm = nn.LayerNorm(hidden, eps=config.connector_layer_norm_eps)
        self.dropout = config.connector_dropout

    def forward(self, queries, window_features, masks: WindowMasks, output_attentions: bool = False):
        """Returns the updated queries and the layer's (window, query, cross) attention maps (None when not asked,
        the window map also None when the layer has no window attention)."""
        windows = masks.windows_per_row
        window_map = None
        if self.window_attention is not None:
            window_features, window_map = self.window_attention(
                window_features, window_features, windows, masks.window, output_attentions
            )
        queries, query_map = self.self_attention(queries, queries, windows, [None] * len(windows), output_attentions)
        queries, cross_map = self.cross_attention(queries, window_features, windows, masks.cross, output_attentions)
        update = self.output(self.activation(self.intermediate(queries)))
        queries = self.output_layer_norm(nn.functional.dropout(update, self.dropout, self.training) + queries)
        return queries, (window_map, query_map, cross_map)


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


@dataclass
class CausalQFormerOutput(ModelOutput):
    """last_hidden_state: (R, S, Q, H) query outputs. With `output_attentions`, one tuple per layer holding one map
    per resolution r, windows in time order (sample, then window): window_attentions (S * w_r, heads, L_r, L_r) of
    the frame-level block over the window features (None for layers without it), query_attentions
    (S * w_r, heads, Q_r, Q_r) and cross_attentions (S * w_r, heads, Q_r, L_r), w_r = windows of resolution r per
    super-window, L_r / Q_r its tokens / queries per window."""

    last_hidden_state: torch.Tensor | None = None
    window_attentions: tuple | None = None
    query_attentions: tuple | None = None
    cross_attentions: tuple | None = None


class CausalQFormer(nn.Module):
    """Shared Q-Former body: query LayerNorm (BERT embeddings' LayerNorm) and the causal layers."""

    def __init__(self, config):
        super().__init__()
        self.query_layer_norm = nn.LayerNorm(config.connector_hidden_size, eps=config.connector_layer_norm_eps)
        self.dropout = nn.Dropout(config.connector_dropout)
        self.layers = nn.ModuleList([CausalQFormerLayer(config) for _ in range(config.connector_num_hidden_layers)])

    def forward(
        self, queries: torch.Tensor, window_features: torch.Tensor, masks: WindowMasks, output_attentions: bool = False
    ) -> CausalQFormerOutput:
        # queries (R, S, Q, H), window_features (R, S, L, F) -> (R, S, Q, H)
        queries = self.dropout(self.query_layer_norm(queries))
        maps = []
        for layer in self.layers:
            queries, layer_maps = layer(queries, window_features, masks, output_attentions)
            maps.append(layer_maps)
        if not output_attentions:
            return CausalQFormerOutput(last_hidden_state=queries)
        window, query, cross = (tuple(_resolution_maps(m) for m in kind) for kind in zip(*maps))
        return CausalQFormerOutput(
            last_hidden_state=queries, window_attentions=window, query_attentions=query, cross_attentions=cross
        )


def _resolution_maps(maps: list[torch.Tensor] | None) -> tuple[torch.Tensor, ...] | None:
    return tuple(maps) if maps is not None else None


__all__ = [
    "CausalQFormer",
    "CausalQFormerLayer",
    "CausalQFormerOutput",
    "QFormerAttention",
    "WindowMasks",
    "build_window_masks",
    "eager_attention_forward",
    "qformer_attention_function",
]
