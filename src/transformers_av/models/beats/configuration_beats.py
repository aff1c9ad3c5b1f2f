"""Configuration of BEATs, the audio-event encoder of video-SALMONN (Chen et al., 2022)."""

from huggingface_hub.dataclasses import strict
from transformers import PreTrainedConfig


@strict
class BeatsConfig(PreTrainedConfig):
    r"""
    Configuration of [`BeatsModel`]: the BEATs transformer encoder (iter3+ AS2M is what video-SALMONN uses), run in
    features-only mode. Field names follow the official `BEATsConfig` so an official `cfg` dict can be passed as is.

    Args:
        input_patch_size (`int`, defaults to 16): side of the square fbank patches (time x frequency).
        embed_dim (`int`, defaults to 512): width of the patch embedding.
        conv_bias (`bool`, defaults to `False`): whether the patch-embedding convolution has a bias.
        encoder_layers (`int`, defaults to 12): number of transformer layers.
        encoder_embed_dim (`int`, defaults to 768): transformer width (and output width).
        encoder_ffn_embed_dim (`int`, defaults to 3072): feed-forward width.
        encoder_attention_heads (`int`, defaults to 12): attention heads.
        activation_fn (`str`, defaults to `"gelu"`): feed-forward activation.
        layer_norm_first (`bool`, defaults to `False`): pre-norm (`True`) or post-norm (`False`) layers.
        deep_norm (`bool`, defaults to `True`): DeepNorm residual scaling of post-norm layers.
        dropout, attention_dropout, activation_dropout, encoder_layerdrop, dropout_input (`float`): dropout rates.
        conv_pos (`int`, defaults to 128): kernel size of the convolutional position embedding.
        conv_pos_groups (`int`, defaults to 16): groups of that convolution.
        relative_position_embedding (`bool`, defaults to `True`): T5-style bucketed relative position bias.
        num_buckets (`int`, defaults to 320), max_distance (`int`, defaults to 800): relative-position buckets.
        gru_rel_pos (`bool`, defaults to `True`): gated relative position bias.
        num_mel_bins (`int`, defaults to 128): fbank bins the model expects.
        chunk_frames (`int`, *optional*, defaults to 6000): fbank frames (10 ms each) encoded in one pass. Longer
            inputs are cut into consecutive chunks of this many frames, each encoded on its own and their tokens
            concatenated, as Whisper does with 30 s: the self-attention (and its T x T relative position table)
            then costs memory linear in the input's length instead of quadratic (an unchunked 30-minute input asks
            for a 90,000 x 90,000 table). 6000 frames = 60 s, the longest media the official video-SALMONN inference
            takes, so every input it can see is still encoded in one pass, bit for bit. A multiple of
            `input_patch_size`; `None` never chunks.
    """

    model_type = "beats"
    attribute_map = {
        "hidden_size": "encoder_embed_dim",
        "num_hidden_layers": "encoder_layers",
        "num_attention_heads": "encoder_attention_heads",
        "intermediate_size": "encoder_ffn_embed_dim",
    }

    input_patch_size: int = 16
    embed_dim: int = 512
    conv_bias: bool = False
    encoder_layers: int = 12
    encoder_embed_dim: int = 768
    encoder_ffn_embed_dim: int = 3072
    encoder_attention_heads: int = 12
    activation_fn: str = "gelu"
    layer_norm_first: bool = False
    deep_norm: bool = True
    dropout: float = 0.0
    attention_dropout: float = 0.0
    activation_dropout: float = 0.0
    encoder_layerdrop: float = 0.0
    dropout_input: float = 0.0
    conv_pos: int = 128
    conv_pos_groups: int = 16
    relative_position_embedding: bool = True
    num_buckets: int = 320
    max_distance: int = 800
    gru_rel_pos: bool = True
    num_mel_bins: int = 128
    initializer_range: float = 0.02
    chunk_frames: int | None = 6000

    def __post_init__(self, **kwargs):
        super().__post_init__(**kwargs)
        if self.chunk_frames is not None and (
            self.chunk_frames < self.input_patch_size or self.chunk_frames % self.input_patch_size
        ):
            raise ValueError(
                f"Invalid BeatsConfig: chunk_frames must be None or a positive multiple of input_patch_size "
                f"({self.input_patch_size}) fbank frames, got {self.chunk_frames}."
            )


__all__ = ["BeatsConfig"]
