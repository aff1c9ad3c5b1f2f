"""The causal multi-resolution Q-Former connector of FAVOR / video-SALMONN.

Every resolution cuts the synchronised frames into non-overlapping windows and summarises each window with its own
learned queries; all resolutions share the Q-Former weights. Each layer first runs a frame-level (block-triangular)
self-attention over the window's input features and uses its output as keys/values of that layer's cross-attention
(it is not chained into the next layer: every layer re-reads the window's input features).

What the resolutions share is computed once. Resolution r reads the same LayerNorm'd features x, plus the position
row p of each token's index inside its own window. The first thing any layer does with them is a linear map W, and
W (x + p) + b = (W x + b) + W p: so every layer projects the features ONCE per projection (the big product, tokens x
F x F, accumulated onto resolution 0's projected position table W p_0 + b) and moving on to resolution r adds the
small difference W p_r - W p_(r-1) (window length x F, broadcast over the windows) to that same buffer, in place when
no gradient flows through it. (The identity needs the positions added after the LayerNorm, which is what the official
model does; the frame-level block's own output LayerNorm comes after the attention and is not crossed.) Everything
after that first projection depends on the window cut and runs per resolution, on views of the shared buffers (no
copies of the features per resolution). In the frame-level block a frame only ever attends one side of itself, so
the attention runs frame by frame on the keys it may see (a contiguous slice of its window), computing only the
allowed blocks of the block-triangular mask instead of masking the forbidden ones, each frame's context written
straight into its rows. The first layer's queries are the same in every window; they stay one row until the
cross-attention makes them differ. Windows never see each other, so long videos run as consecutive groups of whole
windows (`CausalQFormer.max_group_tokens`), each LayerNorm'd on its own: time grows linearly with video length, and
the memory on top of the input and the (small) output is bounded by the group size. Every intermediate is released as
soon as it is consumed (a group holds its features, one buffer per projection and one attention's worth of
temporaries), so the peak stays a few times the group's features.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, replace

import torch
from torch import nn
from transformers.activations import ACT2FN
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.modeling_outputs import ModelOutput
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS
from transformers.utils import logging

logger = logging.get_logger(__name__)

# kernels that cannot add an arbitrary (padding) float mask to the scores of every head
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
    padding masks, so the connector runs sdpa instead."""
    if output_attentions:
        return eager_attention_forward
    implementation = config._attn_implementation or "sdpa"
    if any(name in implementation for name in _MASKLESS_IMPLEMENTATIONS):
        logger.warning_once(
            f"The FAVOR connector Q-Former cannot run attn_implementation={implementation!r} (its padding masks are "
            f"additive float masks); it uses 'sdpa' while the rest of the model keeps {implementation!r}."
        )
        implementation = "sdpa"
    return ALL_ATTENTION_FUNCTIONS.get_interface(implementation, eager_attention_forward)


@dataclass
class QFormerWindows:
    """The Q-Former's view of the window features: one copy shared by every resolution.

    features: (W * L, F) joint tokens of every window, in time order (sample-major), L the coarsest window's token
        count; resolution r reads them as (W_r, L_r, F) windows of L_r = k_r * tokens_per_frame. LayerNorm'd when the
        layers read them (`CausalQFormer.forward` normalises each group with its `feature_norm`).
    positions: per resolution, (L_r, F) position-table rows of the token indices inside one of its windows.
    window_lengths: L_r, tokens per window of each resolution.
    key_padding: per resolution, (W_r, 1, 1, L_r) additive cross-attention mask (padding frames get the dtype's
        minimum, not -inf, so a window made only of padding attends uniformly to its own tokens, as the reference
        implementation does), or None when no window of the batch holds padding.
    tokens_per_frame: tokens of one 0.5 s frame (the granularity of the frame-level causal attention).
    causal_attention: "future" (frame i attends frames j >= i, the official rule), "past" (j <= i) or "none".
    num_tokens: W * L, the rows of all the windows (None: `features.shape[0]`). `features` may stop short of it
        (the tokens of one video end inside its last window): the missing rows are zeros, added by `split` to the
        group they fall in instead of to a copy of the whole video.
    """

    features: torch.Tensor
    positions: list[torch.Tensor]
    window_lengths: list[int]
    key_padding: list[torch.Tensor | None]
    tokens_per_frame: int
    causal_attention: str
    num_tokens: int | None = None

    @property
    def total_tokens(self) -> int:
        return self.features.shape[0] if self.num_tokens is None else self.num_tokens

    def num_windows(self, resolution: int) -> int:
        return self.total_tokens // self.window_lengths[resolution]

    def split(self, max_tokens: int | None = None) -> list[QFormerWindows]:
        """Consecutive groups of whole windows of every resolution, cut at multiples of the longest window, of at
        most `max_tokens` tokens (at least one longest window; None: one group), each holding all its rows."""
        longest = max(self.window_lengths)  # a multiple of every other window length (the windows nest)
        total = self.total_tokens
        step = total if max_tokens is None else max(1, max_tokens // longest) * longest
        if total <= step and self.features.shape[0] == total:
            return [self]
        groups = []
        for start in range(0, total, step):
            stop = min(start + step, total)
            features = self.features[start:stop]
            if features.shape[0] < stop - start:  # the tokens end inside this group: zeros up to its last window
                features = nn.functional.pad(features, (0, 0, 0, stop - start - features.shape[0]))
            key_padding = [
                None if mask is None else mask[start // length : stop // length]
                for mask, length in zip(self.key_padding, self.window_lengths)
            ]
            groups.append(replace(self, features=features, key_padding=key_padding, num_tokens=None))
        return groups

    def windows_of(self, tensor: torch.Tensor, resolution: int) -> torch.Tensor:
        """(W * L, D) token rows -> (W_r, L_r, D) windows of `resolution` (a view)."""
        return tensor.view(-1, self.window_lengths[resolution], tensor.shape[-1])


def build_key_padding_masks(
    frames_per_window: list[int], tokens_per_frame: int, frame_valid: torch.Tensor, dtype: torch.dtype
) -> list[torch.Tensor | None]:
    """Per resolution, the (W_r, 1, 1, L_r) additive cross-attention mask of `frame_valid` (B, T') (None for every
    resolution when all frames are valid)."""
    if bool(frame_valid.all()):
        return [None] * len(frames_per_window)
    # padding frames get the finite minimum: a window made only of padding must not give NaN
    padding = torch.zeros(frame_valid.shape, dtype=dtype, device=frame_valid.device).masked_fill(
        ~frame_valid, torch.finfo(dtype).min
    )
    return [
        padding.reshape(-1, frames).repeat_interleave(tokens_per_frame, -1)[:, None, None, :]
        for frames in frames_per_window
    ]


class QFormerAttention(nn.Module):
    """BERT attention block: multi-head attention, output dense, dropout, residual, LayerNorm (no feed-forward).

    The attention product goes through the attention interface selected by `config._attn_implementation` (see
    [`qformer_attention_function`])."""

    is_causal = False  # causality comes from the frame blocks, never from the kernel's own causal flag

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
        attention_mask: torch.Tensor | None = None,
        output_attentions: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """hidden_states (W or 1, Lq, D), key_value_states (W, Lk, Dkv): one row per window; a single row of
        hidden_states is shared by every window. attention_mask additive, broadcastable to (W, heads, Lq, Lk).
        Returns the block's output (W, Lq, D) and, with `output_attentions`, the attention map (W, heads, Lq, Lk)."""
        context, weights = self.attend(
            self.query(hidden_states),
            self.key(key_value_states),
            self.value(key_value_states),
            attention_mask,
            output_attentions,
        )
        return self.add_and_norm(context, hidden_states), weights

    def project_windows(
        self, projections: list[nn.Linear], windows: QFormerWindows
    ) -> Iterator[list[torch.Tensor]]:
        """Yield, resolution after resolution, each of `projections` applied to that resolution's position-embedded
        windows: a list of (W_r, L_r, D) tensors, W (x + p_r) + b.

        Each projection runs ONE product over the shared features, (W x) + (b + W p_0), its bias being resolution 0's
        projected position table broadcast over that resolution's windows (no pass of its own: the product
        accumulates into it). Moving on to resolution r adds the difference of the two tables, W p_r - W p_(r-1)
        (repeated over the longest window, which every window length divides), over the same buffer: in place when no
        gradient flows through it, so a group holds one buffer per projection whatever the number of resolutions. The
        tensors yielded for a resolution are therefore only valid until the next one is asked for (the caller
        consumes them first)."""
        features = windows.features
        longest = max(windows.window_lengths)
        # per resolution and projection: W p_r, the projected position rows of one window (L_r, D)
        tables = [[nn.functional.linear(positions, projection.weight) for projection in projections]
                  for positions in windows.positions]
        states = []
        for projection, table in zip(projections, tables[0]):
            state = features.new_empty(features.shape[0], projection.out_features)
            state.view(-1, *table.shape).copy_(table + projection.bias)
            states.append(state.addmm_(features, projection.weight.T))
        for r in range(len(tables)):
            if r > 0:
                states = [
                    _add_rows(state, _repeated(later, longest) - _repeated(earlier, longest), longest)
                    for state, earlier, later in zip(states, tables[r - 1], tables[r])
                ]
            yield [windows.windows_of(state, r) for state in states]

    def window_outputs(
        self, windows: QFormerWindows, output_attentions: bool = False
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor | None]]:
        """The frame-level block over every resolution's windows: yields, resolution after resolution, its output
        (W_r, L_r, F) and attention map (W_r, heads, L_r, L_r) (None unless `output_attentions`)."""
        for r, (query, key, value) in enumerate(self.project_windows([self.query, self.key, self.value], windows)):
            context, weights = self.attend(
                query, key, value, None, output_attentions, windows.causal_attention, windows.tokens_per_frame
            )
            del query, key, value
            # residual = the block's input x + p_r, never materialised per resolution
            features = windows.windows_of(windows.features, r)
            if self.training and self.dropout > 0:
                hidden = nn.functional.dropout(self.dense(context), self.dropout, True) + features + windows.positions[r]
            else:  # x + context W^T in one addmm, then (p_r + b) as one small table
                hidden = torch.addmm(features.flatten(0, 1), context.flatten(0, 1), self.dense.weight.T)
                hidden = hidden.view_as(features).add_(windows.positions[r] + self.dense.bias)
            del context
            output = self.layer_norm(hidden)
            del hidden
            yield output, weights
            # a suspended generator keeps its locals: drop them before the next resolution is computed
            del output, weights

    def attend(
        self,
        query: torch.Tensor,
        key: torch.Tensor,
        value: torch.Tensor,
        attention_mask: torch.Tensor | None,
        output_attentions: bool = False,
        causal_attention: str = "none",
        tokens_per_frame: int = 1,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Multi-head attention of projected query (W or 1, Lq, D) over key/value (W, Lk, D) -> context (W, Lq, D)
        and, with `output_attentions`, the map (W, heads, Lq, Lk).

        causal_attention "future" / "past" (self-attention over frames of `tokens_per_frame` tokens): query frame i
        attends only key frames j >= i / j <= i. Each frame's queries attend the contiguous slice of keys they may
        see, so the forbidden blocks are never computed (and are exactly 0 in the map)."""
        rows, query_length, width = key.shape[0], query.shape[1], query.shape[-1]
        attention = qformer_attention_function(self.config, output_attentions)
        dropout = self.dropout if self.training else 0.0
        query, key, value = (self._heads(x, rows) for x in (query, key, value))
        if causal_attention == "none" or query_length <= tokens_per_frame:  # one frame only ever sees itself
            context, weights = attention(self, query, key, value, attention_mask, dropout=dropout, scaling=self.scaling)
            return context.reshape(rows, query_length, width), weights

        key_length = key.shape[2]
        weights = query.new_zeros(rows, self.num_heads, query_length, key_length) if output_attentions else None
        # every frame's context goes straight into its rows (no list of frame contexts joined afterwards)
        context = query.new_empty(rows, query_length, self.num_heads, self.head_dim)
        for start in range(0, query_length, tokens_per_frame):
            frame = slice(start, start + tokens_per_frame)
            visible = slice(start, key_length) if causal_attention == "future" else slice(0, start + tokens_per_frame)
            frame_context, frame_weights = attention(
                self, query[:, :, frame], key[:, :, visible], value[:, :, visible], None, dropout=dropout,
                scaling=self.scaling,
            )
            context[:, frame] = frame_context  # (W, tokens_per_frame, heads, head_dim)
            if weights is not None:
                weights[:, :, frame, visible] = frame_weights
        return context.view(rows, query_length, width), weights

    def add_and_norm(self, context: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        """LayerNorm(dropout(dense(context)) + residual), residual broadcast over windows."""
        return self.layer_norm(nn.functional.dropout(self.dense(context), self.dropout, self.training) + residual)

    def _heads(self, states: torch.Tensor, rows: int) -> torch.Tensor:
        # (W or 1, L, D) -> (W, heads, L, head_dim); a single row is expanded over the W windows without a copy
        return states.view(states.shape[0], states.shape[1], self.num_heads, self.head_dim).transpose(1, 2).expand(
            rows, -1, -1, -1
        )


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

    def forward(
        self, features: torch.Tensor, *tensors: torch.Tensor, windows: QFormerWindows, output_attentions: bool = False
    ) -> tuple:
        """features: `windows.features`; tensors: the R position tables of `windows`, then the R queries, per
        resolution (W_r or 1, N_r, H). Every tensor that carries a gradient is a positional argument, so that
        reentrant gradient checkpointing (`use_reentrant=True`, which only sees positional tensors) recomputes the
        layer and passes gradients back to them. Returns the R updated queries (W_r, N_r, H), then the layer's (window,
        query, cross) attention maps, one per resolution (None when not asked; the window maps also None when the
        layer has no window attention)."""
        num_resolutions = len(tensors) // 2
        windows = replace(windows, features=features, positions=list(tensors[:num_resolutions]))
        queries = list(tensors[num_resolutions:])
        cross = self.cross_attention
        keys_values = self._cross_keys_values(windows, output_attentions)
        outputs, window_maps, query_maps, cross_maps = [], [], [], []
        for r, query_states in enumerate(queries):
            key, value, window_map = next(keys_values)
            query_states, query_map = self.self_attention(query_states, query_states, None, output_attentions)
            if query_map is not None:  # one map per window, also while the windows share their queries
                query_map = query_map.expand(windows.num_windows(r), -1, -1, -1)
            context, cross_map = cross.attend(
                cross.query(query_states), key, value, windows.key_padding[r], output_attentions
            )
            del key, value  # before the next resolution's keys and values exist
            query_states = cross.add_and_norm(context, query_states)
            update = self.output(self.activation(self.intermediate(query_states)))
            outputs.append(
                self.output_layer_norm(nn.functional.dropout(update, self.dropout, self.training) + query_states)
            )
            window_maps.append(window_map)
            query_maps.append(query_map)
            cross_maps.append(cross_map)
        # the queries as top-level tensors of the output: reentrant checkpointing connects only those to the graph
        if not output_attentions:
            return (*outputs, (None, None, None))
        return (*outputs, (window_maps if self.window_attention is not None else None, query_maps, cross_maps))

    def _cross_keys_values(
        self, windows: QFormerWindows, output_attentions: bool
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]]:
        """Yield, resolution after resolution, the cross-attention's keys and values (W_r, L_r, H) and the frame-level
        block's map: projections of the frame-level block's output, or of the windows themselves without one."""
        cross = self.cross_attention
        if self.window_attention is None:
            for key, value in cross.project_windows([cross.key, cross.value], windows):
                yield key, value, None
                del key, value  # a suspended generator keeps its locals: not while the next resolution is computed
            return
        for output, weights in self.window_attention.window_outputs(windows, output_attentions):
            key, value = cross.key(output), cross.value(output)
            del output
            yield key, value, weights
            del key, value, weights


def _repeated(table: torch.Tensor, rows: int) -> torch.Tensor:
    """The (L, D) rows of `table` repeated down to (`rows`, D); `rows` a multiple of L."""
    return table.repeat(rows // table.shape[0], 1)


def _add_rows(state: torch.Tensor, table: torch.Tensor, period: int) -> torch.Tensor:
    """`state` (n * period, D) plus `table` (period, D) added to every block of `period` rows: in place unless a
    gradient flows through `state` (autograd may have saved views of it for the backward)."""
    blocks = state.view(-1, period, state.shape[-1])
    if state.requires_grad:
        return (blocks + table).view_as(state)
    blocks.add_(table)
    return state


@dataclass
class CausalQFormerOutput(ModelOutput):
    """last_hidden_state: per resolution r, (W_r, Q_r, H) query outputs, windows in time order (sample, then
    window). With `output_attentions`, one tuple per layer holding one map per resolution: window_attentions
    (W_r, heads, L_r, L_r) of the frame-level block over the window features (None for layers without it),
    query_attentions (W_r, heads, Q_r, Q_r) and cross_attentions (W_r, heads, Q_r, L_r), L_r / Q_r the tokens /
    queries of one window of resolution r."""

    last_hidden_state: tuple[torch.Tensor, ...] | None = None
    window_attentions: tuple | None = None
    query_attentions: tuple | None = None
    cross_attentions: tuple | None = None


class CausalQFormer(nn.Module):
    """Shared Q-Former body: query LayerNorm (BERT embeddings' LayerNorm) and the causal layers."""

    #: Windows never see each other, so the Q-Former runs over consecutive groups of whole coarsest windows of at
    #: most this many tokens (at least one window): 8,192 tokens = 25 windows of 320 tokens, about 2 min of video.
    #: A group's intermediates are a few times its features (8,192 x 2,304 fp32 = 72 MiB at video-SALMONN's width),
    #: so the memory a call needs on top of its input and output stops growing with the video. Each group also pays a
    #: fixed part (Python and kernel launches, re-reading the F x F projection weights), so groups must not be tiny.
    #: Measured on CPU with benchmarks/connector.py (interleaved rounds): the tiny config at 30 min runs as fast with
    #: 4,096 to 16,384 tokens per group and slower outside; video-SALMONN 13B shapes at 5 min lose ~25% with groups
    #: of one window (320 tokens) and are flat from 1,600 tokens (5 windows) up (one round each).
    max_group_tokens: int = 8192

    def __init__(self, config):
        super().__init__()
        self.query_layer_norm = nn.LayerNorm(config.connector_hidden_size, eps=config.connector_layer_norm_eps)
        self.dropout = nn.Dropout(config.connector_dropout)
        self.layers = nn.ModuleList([CausalQFormerLayer(config) for _ in range(config.connector_num_hidden_layers)])

    def forward(
        self,
        query_tokens: list[torch.Tensor],
        windows: QFormerWindows,
        output_attentions: bool = False,
        feature_norm: nn.Module | None = None,
    ) -> CausalQFormerOutput:
        """query_tokens: per resolution (1, N_r, H) learned queries, the same for every window of that resolution.
        feature_norm: applied to each group's `windows.features` before the layers (the connector's joint LayerNorm:
        the normalised copy of a long video then never exists whole); None when the features come normalised.
        With `output_attentions` the windows run as one group (the maps are as large as the attention itself)."""
        groups = windows.split(None if output_attentions else self.max_group_tokens)
        if feature_norm is not None:
            groups = (replace(group, features=feature_norm(group.features)) for group in groups)
        runs = [self._run(query_tokens, group, output_attentions) for group in groups]
        if len(runs) == 1:
            return runs[0]
        outputs = tuple(torch.cat(per_group) for per_group in zip(*(run.last_hidden_state for run in runs)))
        return CausalQFormerOutput(last_hidden_state=outputs)

    def _run(
        self, query_tokens: list[torch.Tensor], windows: QFormerWindows, output_attentions: bool
    ) -> CausalQFormerOutput:
        queries = []
        for r, tokens in enumerate(query_tokens):
            if self.training and self.dropout.p > 0:
                tokens = tokens.expand(windows.num_windows(r), -1, -1)  # an independent dropout mask per window
            # while every window's queries are equal they stay one row, broadcast over the windows
            queries.append(self.dropout(self.query_layer_norm(tokens)))
        maps = []
        for layer in self.layers:
            *queries, layer_maps = layer(
                windows.features, *windows.positions, *queries, windows=windows, output_attentions=output_attentions
            )
            maps.append(layer_maps)
        outputs = tuple(queries)
        if not output_attentions:
            return CausalQFormerOutput(last_hidden_state=outputs)
        window, query, cross = (tuple(_resolution_maps(m) for m in kind) for kind in zip(*maps))
        return CausalQFormerOutput(
            last_hidden_state=outputs, window_attentions=window, query_attentions=query, cross_attentions=cross
        )


def _resolution_maps(maps: list[torch.Tensor] | None) -> tuple[torch.Tensor, ...] | None:
    return tuple(maps) if maps is not None else None


__all__ = [
    "CausalQFormer",
    "CausalQFormerLayer",
    "CausalQFormerOutput",
    "QFormerAttention",
    "QFormerWindows",
    "build_key_padding_masks",
    "eager_attention_forward",
    "qformer_attention_function",
]
