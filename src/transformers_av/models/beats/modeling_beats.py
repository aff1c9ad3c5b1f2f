"""BEATs audio-event encoder (Chen et al., 2022, "BEATs: Audio Pre-Training with Acoustic Tokenizers").

Features-only reimplementation of the official `BEATs.extract_features(..., feature_only=True)` as used by
video-SALMONN: the fbank (computed by [`BeatsFeatureExtractor`]) is cut into square patches by a strided Conv2d,
layer-normalised, projected to the encoder width and run through a post-norm (DeepNorm) transformer with a
convolutional position embedding and a gated, bucketed relative position bias. The predictor head of the
fine-tuned checkpoints is not part of this model.

Differences in form (not in numbers) from the official module:

* the position convolution holds a plain `weight`; the official `weight_g` / `weight_v` pair (`weight_norm`, dim=2)
  is folded by the converter with `torch._weight_norm`, the very op the official forward pre-hook runs, so the
  weight is bit-identical. Training the encoder therefore no longer uses the weight-norm reparametrisation.
* the relative-position embedding lives only in layer 0 (`encoder.layers.0.self_attn.relative_attention_bias`); the
  official model aliases that module into every layer but only ever evaluates layer 0's copy, exactly like here.
* layer-wise gradient decay (`layer_wise_gradient_decay_ratio`) only scales gradients and is not implemented.
* inputs longer than `config.chunk_frames` (60 s, the official inference's longest media) are encoded chunk by chunk
  (the official model attends over the whole input, with a T x T relative position table: 64.8 GB at 30 minutes).
* the attention product runs through transformers' attention interface (`attn_implementation`: `"sdpa"` by default,
  `"eager"` computes the official operations in the official order); the gated relative position bias and the
  padding reach it as one additive float mask. `output_attentions=True` always runs the eager path.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from transformers import PreTrainedModel
from transformers import initialization as init
from transformers.activations import ACT2FN
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.modeling_outputs import BaseModelOutput
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

from .configuration_beats import BeatsConfig


def _exact_gelu(x: torch.Tensor) -> torch.Tensor:
    # the official feed-forward runs gelu in float32 and casts back
    return nn.functional.gelu(x.float()).type_as(x)


_ACTIVATIONS = {
    "gelu": _exact_gelu,
    "relu": nn.functional.relu,
    "tanh": torch.tanh,
    "linear": lambda x: x,
}


def _get_activation(name: str):
    if name in _ACTIVATIONS:
        return _ACTIVATIONS[name]
    if name in ("gelu_accurate", "gelu_fast"):
        return ACT2FN["gelu_new"]  # tanh approximation, same formula as fairseq's gelu_accurate
    raise ValueError(f"Unsupported BEATs activation_fn {name!r} (the GLU variant is not implemented).")


def beats_token_padding_mask(attention_mask: torch.Tensor, num_tokens: int) -> torch.Tensor:
    """Frame-level `attention_mask` (B, frames), 1 = valid, -> token-level padding mask (B, num_tokens), True = pad.

    Same rule as the official `forward_padding_mask`: drop the `frames % num_tokens` trailing frames, cut the rest
    into `num_tokens` equal consecutive chunks and mark a token as padding when its whole chunk is padding. The chunks
    ignore the time-major patch layout (with 128 bins a token covers 2 frames, while its patch spans 16), so the
    mask is only an approximation of which tokens saw padding; see the tests for what that implies.
    """
    padding = attention_mask == 0
    batch_size, frames = padding.shape
    if num_tokens == 0:
        return padding.new_zeros(batch_size, 0)
    extra = frames % num_tokens
    if extra > 0:
        padding = padding[:, :-extra]
    return padding.reshape(batch_size, num_tokens, -1).all(-1)


class BeatsPositionalConvEmbedding(nn.Module):
    """Grouped Conv1d over time (weight norm folded into `conv.weight`), trimmed to the input length, then GELU."""

    def __init__(self, config: BeatsConfig):
        super().__init__()
        self.conv = nn.Conv1d(
            config.encoder_embed_dim,
            config.encoder_embed_dim,
            kernel_size=config.conv_pos,
            padding=config.conv_pos // 2,
            groups=config.conv_pos_groups,
        )
        # an even kernel with symmetric padding yields one frame too many: drop the last one
        self.num_pad_remove = 1 if config.conv_pos % 2 == 0 else 0

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        hidden_states = self.conv(hidden_states.transpose(1, 2))
        if self.num_pad_remove > 0:
            hidden_states = hidden_states[:, :, : -self.num_pad_remove]
        hidden_states = nn.functional.gelu(hidden_states)
        return hidden_states.transpose(1, 2)


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
    """softmax(query key^T * scaling + attention_mask) value, computed like the official BEATs attention.

    BEATs hands in queries already divided by sqrt(head_dim) * alpha and `scaling` = alpha: the raw scores are
    shifted by their row maximum BEFORE being scaled back by alpha (the official guard against fp16 overflow), then
    the additive mask (relative position bias, -inf on padded keys) is added. query (B, H, T, d), key/value
    (B, H, S, d), attention_mask broadcastable to (B, H, T, S). Returns the context (B, T, H, d) and the attention
    probabilities (B, H, T, S) before dropout."""
    scores = torch.matmul(query, key.transpose(-1, -2))
    scores = (scores - scores.amax(dim=-1, keepdim=True)) * scaling
    if attention_mask is not None:
        scores = scores + attention_mask
    probabilities = nn.functional.softmax(scores, dim=-1).type_as(scores)
    dropped = nn.functional.dropout(probabilities, p=dropout, training=module.training)
    return torch.matmul(dropped, value).transpose(1, 2).contiguous(), probabilities


class BeatsAttention(nn.Module):
    """Multi-head self-attention with BEATs' numerics: queries pre-scaled by 1/(sqrt(d) * 32), scores shifted by
    their row maximum and scaled back by 32 (eager path), plus the (optionally query-gated) relative position bias,
    which reaches the attention interface (`config._attn_implementation`) as an additive float mask together with
    the padding (-inf on padded keys)."""

    is_causal = False

    def __init__(self, config: BeatsConfig, has_relative_attention_bias: bool):
        super().__init__()
        self.config = config
        self.embed_dim = config.encoder_embed_dim
        self.num_heads = config.encoder_attention_heads
        self.head_dim = self.embed_dim // self.num_heads
        if self.head_dim * self.num_heads != self.embed_dim:
            raise ValueError(
                f"encoder_embed_dim ({self.embed_dim}) must be divisible by encoder_attention_heads ({self.num_heads})"
            )
        self.scaling = self.head_dim**-0.5
        self.alpha = 32
        self.dropout = config.attention_dropout
        self.num_buckets = config.num_buckets
        self.max_distance = config.max_distance

        self.k_proj = nn.Linear(self.embed_dim, self.embed_dim)
        self.v_proj = nn.Linear(self.embed_dim, self.embed_dim)
        self.q_proj = nn.Linear(self.embed_dim, self.embed_dim)
        self.out_proj = nn.Linear(self.embed_dim, self.embed_dim)

        self.has_relative_attention_bias = has_relative_attention_bias
        if has_relative_attention_bias:
            self.relative_attention_bias = nn.Embedding(config.num_buckets, self.num_heads)

        self.gru_rel_pos = config.gru_rel_pos
        if self.gru_rel_pos:
            self.grep_linear = nn.Linear(self.head_dim, 8)
            self.grep_a = nn.Parameter(torch.ones(1, self.num_heads, 1, 1))

    def _relative_position_bucket(self, relative_position: torch.Tensor) -> torch.Tensor:
        # bidirectional T5 buckets: half of them per direction, exact below half of that, log-spaced up to max_distance
        num_buckets = self.num_buckets // 2
        buckets = (relative_position > 0).to(torch.long) * num_buckets
        distance = relative_position.abs()
        max_exact = num_buckets // 2
        log_bucket = max_exact + (
            torch.log(distance.float() / max_exact) / math.log(self.max_distance / max_exact) * (num_buckets - max_exact)
        ).to(torch.long)
        log_bucket = torch.clamp(log_bucket, max=num_buckets - 1)
        return buckets + torch.where(distance < max_exact, distance, log_bucket)

    def compute_bias(self, query_length: int, key_length: int) -> torch.Tensor:
        """(heads, query_length, key_length) relative position bias; only the module that owns the embedding."""
        device = self.relative_attention_bias.weight.device
        relative_position = (
            torch.arange(key_length, dtype=torch.long, device=device)[None, :]
            - torch.arange(query_length, dtype=torch.long, device=device)[:, None]
        )
        values = self.relative_attention_bias(self._relative_position_bucket(relative_position))
        return values.permute(2, 0, 1)

    def _attention_mask(
        self, query: torch.Tensor, key_padding_mask: torch.Tensor | None, position_bias: torch.Tensor | None
    ) -> torch.Tensor | None:
        """Additive mask broadcastable to (B, H, T, T): the (gated) relative position bias, -inf on padded keys."""
        batch_size, _, seq_len, _ = query.shape
        mask = None
        if position_bias is not None:
            mask = position_bias.unsqueeze(0)  # (1, H, T, T)
            if self.gru_rel_pos:
                # gate from the unscaled query of every head and position (undoing the pre-scaling, as the official)
                raw_query = query * self.alpha / self.scaling
                gates = self.grep_linear(raw_query).view(batch_size, self.num_heads, seq_len, 2, 4).sum(-1)
                gate_a, gate_b = torch.sigmoid(gates).chunk(2, dim=-1)
                gate = gate_a * (gate_b * self.grep_a - 1.0) + 2.0  # (B, H, T, 1)
                mask = gate * mask
        if key_padding_mask is not None:
            padded = key_padding_mask[:, None, None, :].to(torch.bool)
            if mask is None:
                mask = torch.zeros(padded.shape, dtype=query.dtype, device=query.device)
            mask = torch.where(padded, float("-inf"), mask)
        return mask

    def forward(
        self,
        hidden_states: torch.Tensor,
        key_padding_mask: torch.Tensor | None = None,
        position_bias: torch.Tensor | None = None,
        output_attentions: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """hidden_states (B, T, C); key_padding_mask (B, T) True = pad; position_bias (heads, T, T).
        `output_attentions` runs the eager path (the only one that computes the attention probabilities)."""
        batch_size, seq_len, _ = hidden_states.shape
        shape = (batch_size, seq_len, self.num_heads, self.head_dim)

        query = self.q_proj(hidden_states)
        query = query * self.scaling
        query = query * (1 / self.alpha)
        query = query.view(shape).transpose(1, 2)  # (B, H, T, d)
        key = self.k_proj(hidden_states).view(shape).transpose(1, 2)
        value = self.v_proj(hidden_states).view(shape).transpose(1, 2)
        attention_mask = self._attention_mask(query, key_padding_mask, position_bias)

        attention = eager_attention_forward
        if not output_attentions:
            attention = ALL_ATTENTION_FUNCTIONS.get_interface(self.config._attn_implementation, eager_attention_forward)
        # the query is pre-scaled by 1 / (sqrt(d) * alpha): the scale left to apply is alpha
        context, weights = attention(
            self,
            query,
            key,
            value,
            attention_mask,
            dropout=self.dropout if self.training else 0.0,
            scaling=self.alpha,
        )
        context = context.reshape(batch_size, seq_len, self.embed_dim)
        return self.out_proj(context), (weights if output_attentions else None)


class BeatsEncoderLayer(GradientCheckpointingLayer):
    def __init__(self, config: BeatsConfig, has_relative_attention_bias: bool):
        super().__init__()
        dim = config.encoder_embed_dim
        self.self_attn = BeatsAttention(config, has_relative_attention_bias)
        self.self_attn_layer_norm = nn.LayerNorm(dim)
        self.fc1 = nn.Linear(dim, config.encoder_ffn_embed_dim)
        self.fc2 = nn.Linear(config.encoder_ffn_embed_dim, dim)
        self.final_layer_norm = nn.LayerNorm(dim)
        self.activation_fn = _get_activation(config.activation_fn)
        self.dropout = config.dropout
        self.activation_dropout = config.activation_dropout
        self.layer_norm_first = config.layer_norm_first
        self.deep_norm_alpha = math.pow(2 * config.encoder_layers, 1 / 4) if config.deep_norm else 1.0

    def _feed_forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        hidden_states = self.activation_fn(self.fc1(hidden_states))
        hidden_states = nn.functional.dropout(hidden_states, p=self.activation_dropout, training=self.training)
        hidden_states = self.fc2(hidden_states)
        return nn.functional.dropout(hidden_states, p=self.dropout, training=self.training)

    def forward(
        self,
        hidden_states: torch.Tensor,
        key_padding_mask: torch.Tensor | None = None,
        position_bias: torch.Tensor | None = None,
        output_attentions: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        residual = hidden_states
        if self.layer_norm_first:
            hidden_states = self.self_attn_layer_norm(hidden_states)
            hidden_states, weights = self.self_attn(hidden_states, key_padding_mask, position_bias, output_attentions)
            hidden_states = residual + nn.functional.dropout(hidden_states, p=self.dropout, training=self.training)
            residual = hidden_states
            hidden_states = residual + self._feed_forward(self.final_layer_norm(hidden_states))
        else:
            hidden_states, weights = self.self_attn(hidden_states, key_padding_mask, position_bias, output_attentions)
            hidden_states = nn.functional.dropout(hidden_states, p=self.dropout, training=self.training)
            hidden_states = self.self_attn_layer_norm(residual * self.deep_norm_alpha + hidden_states)
            residual = hidden_states
            hidden_states = self._feed_forward(hidden_states)
            hidden_states = self.final_layer_norm(residual * self.deep_norm_alpha + hidden_states)
        return hidden_states, weights


class BeatsEncoder(nn.Module):
    def __init__(self, config: BeatsConfig):
        super().__init__()
        self.config = config
        self.pos_conv = BeatsPositionalConvEmbedding(config)
        self.layer_norm = nn.LayerNorm(config.encoder_embed_dim)
        # only layer 0 owns the relative-position embedding; its bias is computed once and reused by every layer
        self.layers = nn.ModuleList(
            [
                BeatsEncoderLayer(config, has_relative_attention_bias=config.relative_position_embedding and i == 0)
                for i in range(config.encoder_layers)
            ]
        )
        self.gradient_checkpointing = False

    def relative_position_bias(self, length: int) -> torch.Tensor | None:
        """(heads, length, length) relative position bias shared by every layer (None without one). It depends only
        on key - query offsets, so the bias of a shorter sequence is the top-left corner of this one."""
        if not self.config.relative_position_embedding or len(self.layers) == 0:
            return None
        return self.layers[0].self_attn.compute_bias(length, length)

    def forward(
        self,
        hidden_states: torch.Tensor,
        padding_mask: torch.Tensor | None = None,
        output_attentions: bool = False,
        output_hidden_states: bool = False,
        position_bias: torch.Tensor | None = None,
    ) -> BaseModelOutput:
        """hidden_states (B, T, C); padding_mask (B, T) True = pad; position_bias: a precomputed
        [`~BeatsEncoder.relative_position_bias`] of at least T positions (computed here when not given)."""
        if padding_mask is not None:
            hidden_states = hidden_states.masked_fill(padding_mask.unsqueeze(-1), 0.0)
        hidden_states = hidden_states + self.pos_conv(hidden_states)
        if not self.config.layer_norm_first:
            hidden_states = self.layer_norm(hidden_states)
        hidden_states = nn.functional.dropout(hidden_states, p=self.config.dropout, training=self.training)

        seq_len = hidden_states.shape[1]
        if position_bias is None:
            position_bias = self.relative_position_bias(seq_len)
        if position_bias is not None:
            position_bias = position_bias[:, :seq_len, :seq_len].to(hidden_states.dtype)

        all_hidden_states = (hidden_states,) if output_hidden_states else None
        all_attentions = () if output_attentions else None
        for layer in self.layers:
            if self.training and self.config.encoder_layerdrop > 0.0:
                if torch.rand([]) < self.config.encoder_layerdrop:
                    continue
            hidden_states, weights = layer(hidden_states, padding_mask, position_bias, output_attentions)
            if output_hidden_states:
                all_hidden_states += (hidden_states,)
            if output_attentions:
                all_attentions += (weights,)

        if self.config.layer_norm_first:
            hidden_states = self.layer_norm(hidden_states)
            if output_hidden_states:
                all_hidden_states = all_hidden_states[:-1] + (hidden_states,)
        return BaseModelOutput(
            last_hidden_state=hidden_states, hidden_states=all_hidden_states, attentions=all_attentions
        )


class BeatsPreTrainedModel(PreTrainedModel):
    config_class = BeatsConfig
    config: BeatsConfig
    base_model_prefix = "beats"
    main_input_name = "input_features"
    input_modalities = "audio"
    supports_gradient_checkpointing = True
    _no_split_modules = ["BeatsEncoderLayer"]
    # eager and sdpa take the per-head relative position bias as an additive float mask; flash and flex kernels
    # cannot (flex_attention reads one head of a tensor mask)
    _supports_sdpa = True
    _supports_flash_attn = False
    _supports_flex_attn = False

    @torch.no_grad()
    def _init_weights(self, module):
        # children are initialised before their parents, so the layer-level DeepNorm init below wins over the generic
        # Linear init; values follow the official initialisation (normal 0.02, DeepNorm xavier gains, conv std)
        super()._init_weights(module)
        config = self.config
        if isinstance(module, BeatsPositionalConvEmbedding):
            std = math.sqrt(4.0 / (config.conv_pos * config.encoder_embed_dim))
            init.normal_(module.conv.weight, mean=0.0, std=std)
            init.zeros_(module.conv.bias)
        elif isinstance(module, BeatsAttention):
            if module.gru_rel_pos:
                init.ones_(module.grep_a)
        elif isinstance(module, BeatsEncoderLayer) and config.deep_norm:
            beta = math.pow(8 * config.encoder_layers, -1 / 4)
            init.xavier_normal_(module.self_attn.k_proj.weight, gain=1.0)
            init.xavier_normal_(module.self_attn.v_proj.weight, gain=beta)
            init.xavier_normal_(module.self_attn.q_proj.weight, gain=1.0)
            init.xavier_normal_(module.self_attn.out_proj.weight, gain=beta)
            init.xavier_normal_(module.fc1.weight, gain=beta)
            init.xavier_normal_(module.fc2.weight, gain=beta)


class BeatsModel(BeatsPreTrainedModel):
    """BEATs encoder without the classification head: fbank (B, frames, 128) -> tokens (B, N, encoder_embed_dim),
    N = (frames // patch) * (num_mel_bins // patch), patches flattened time-major."""

    def __init__(self, config: BeatsConfig):
        super().__init__(config)
        self.patch_embedding = nn.Conv2d(
            1,
            config.embed_dim,
            kernel_size=config.input_patch_size,
            stride=config.input_patch_size,
            bias=config.conv_bias,
        )
        self.layer_norm = nn.LayerNorm(config.embed_dim)
        self.post_extract_proj = (
            nn.Linear(config.embed_dim, config.encoder_embed_dim)
            if config.embed_dim != config.encoder_embed_dim
            else None
        )
        self.encoder = BeatsEncoder(config)
        self.post_init()

    def get_input_embeddings(self) -> nn.Module:
        return self.patch_embedding

    def get_num_tokens(self, num_frames: int) -> int:
        """Number of output tokens for an fbank of `num_frames` frames."""
        patch = self.config.input_patch_size
        return (num_frames // patch) * (self.config.num_mel_bins // patch)

    def forward(
        self,
        input_features: torch.FloatTensor,
        attention_mask: torch.Tensor | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ) -> BaseModelOutput | tuple:
        r"""
        input_features (`torch.FloatTensor` of shape `(batch_size, frames, num_mel_bins)`):
            Normalised Kaldi fbank, as returned by [`BeatsFeatureExtractor`].
        attention_mask (`torch.Tensor` of shape `(batch_size, frames)`, *optional*):
            1 for real frames, 0 for padding. Mapped to tokens like the official `forward_padding_mask`
            (see [`beats_token_padding_mask`]); padded tokens are zeroed before the position convolution and masked
            as attention keys. Rows of padded tokens in the output are not meaningful.

        Inputs longer than `config.chunk_frames` (60 s by default) are encoded in consecutive chunks of that many
        frames, each on its own (see [`BeatsConfig`]); `output_attentions` then raises.
        """
        output_attentions = output_attentions if output_attentions is not None else self.config.output_attentions
        output_hidden_states = (
            output_hidden_states if output_hidden_states is not None else self.config.output_hidden_states
        )
        return_dict = return_dict if return_dict is not None else self.config.return_dict

        if input_features.dim() != 3 or input_features.shape[-1] != self.config.num_mel_bins:
            raise ValueError(
                f"input_features must be (batch, frames, {self.config.num_mel_bins}), got {tuple(input_features.shape)}"
            )
        chunk = self.config.chunk_frames
        num_frames = input_features.shape[1]
        if chunk is None or num_frames <= chunk:
            outputs = self._encode(input_features, attention_mask, output_attentions, output_hidden_states)
        else:
            outputs = self._encode_in_chunks(input_features, attention_mask, chunk, output_attentions, output_hidden_states)
        if not return_dict:
            return tuple(v for v in outputs.to_tuple())
        return outputs

    def _encode_in_chunks(
        self,
        input_features: torch.Tensor,
        attention_mask: torch.Tensor | None,
        chunk: int,
        output_attentions: bool,
        output_hidden_states: bool,
    ) -> BaseModelOutput:
        """Encode consecutive `chunk`-frame pieces on their own and concatenate their tokens (see
        `BeatsConfig.chunk_frames`). Trailing frames short of a patch give no token, as in one pass."""
        if output_attentions:
            raise ValueError(
                f"output_attentions=True needs the input encoded in one pass, but its {input_features.shape[1]} fbank "
                f"frames exceed config.chunk_frames={chunk}: pass at most {chunk} frames, or set "
                "config.chunk_frames=None (memory quadratic in length)."
            )
        usable = input_features.shape[1] // self.config.input_patch_size * self.config.input_patch_size
        # every chunk but the last has the same length: one position bias, sliced for the last
        position_bias = self.encoder.relative_position_bias(self.get_num_tokens(chunk))
        pieces = [
            self._encode(
                input_features[:, start : start + chunk],
                None if attention_mask is None else attention_mask[:, start : start + chunk],
                output_attentions=False,
                output_hidden_states=output_hidden_states,
                position_bias=position_bias,
            )
            for start in range(0, usable, chunk)
        ]
        hidden_states = None
        if output_hidden_states:
            hidden_states = tuple(torch.cat(layer, dim=1) for layer in zip(*(p.hidden_states for p in pieces)))
        return BaseModelOutput(
            last_hidden_state=torch.cat([p.last_hidden_state for p in pieces], dim=1), hidden_states=hidden_states
        )

    def _encode(
        self,
        input_features: torch.Tensor,
        attention_mask: torch.Tensor | None,
        output_attentions: bool,
        output_hidden_states: bool,
        position_bias: torch.Tensor | None = None,
    ) -> BaseModelOutput:
        """One pass of the encoder over the whole of `input_features` (B, frames, bins)."""
        features = input_features.to(dtype=self.patch_embedding.weight.dtype).unsqueeze(1)
        features = self.patch_embedding(features)  # (B, C, frames // p, bins // p)
        features = features.reshape(features.shape[0], features.shape[1], -1).transpose(1, 2)  # time-major tokens
        features = self.layer_norm(features)

        padding_mask = None
        if attention_mask is not None:
            padding_mask = beats_token_padding_mask(attention_mask.to(features.device), features.shape[1])

        if self.post_extract_proj is not None:
            features = self.post_extract_proj(features)
        features = nn.functional.dropout(features, p=self.config.dropout_input, training=self.training)

        return self.encoder(
            features,
            padding_mask=padding_mask,
            output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
            position_bias=position_bias,
        )


__all__ = ["BeatsModel", "BeatsPreTrainedModel", "beats_token_padding_mask", "eager_attention_forward"]
