"""CLIP ViT frame encoder of the Audio-Visual LLM (Shu et al., 2023): per-frame [CLS] tokens and time-pooled patches.

Every valid frame of a video goes through a CLIP vision tower on its own (frames are images to CLIP). Two token
streams come out:

* temporal tokens: the [CLS] embedding of each frame, `(B, T, D)`, one token per frame, in time order;
* spatial tokens: the patch embeddings averaged over the valid frames of each sample, `(B, P, D)`, one token per
  patch position (`P = (image_size / patch_size) ** 2`, 256 for ViT-L/14 at 224 px).

Optionally (`pooled_tokens_per_frame=N`) the patch grid of every frame is also adaptively average-pooled to a
`sqrt(N) x sqrt(N)` grid, giving `(B, T, N, D)` per-frame tokens: what a FAVOR-style Q-Former connector consumes when
it is fed CLIP frames instead of InstructBLIP ones.

Checkpoint layout: the tower is a `transformers.CLIPVisionModel` held as `self.vision_model`, so the state dict of
this module is `vision_model.<CLIPVisionModel key>`, which is exactly the layout of the vision half of a `CLIPModel`
checkpoint such as `openai/clip-vit-large-patch14`. [`ClipFrameEncoder.load_tower_state_dict`] also accepts the
unprefixed keys that `CLIPVisionModel.save_pretrained` writes in transformers 5.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import nn
from transformers import CLIPVisionConfig, CLIPVisionModel
from transformers.modeling_outputs import BaseModelOutput
from transformers.utils import ModelOutput

from .patch_grid import clip_num_patches

TOWER_PREFIX = "vision_model."


@dataclass
class ClipFrameOutput(ModelOutput):
    """Output of [`ClipFrameEncoder`].

    Args:
        temporal_tokens (`torch.FloatTensor` of shape `(batch_size, num_frames, hidden_size)`):
            [CLS] embedding of every frame; zeros at padding frames.
        spatial_tokens (`torch.FloatTensor` of shape `(batch_size, num_patches, hidden_size)`):
            Patch embeddings averaged over the valid frames of each sample; zeros for a sample without valid frames.
        frame_mask (`torch.BoolTensor` of shape `(batch_size, num_frames)`):
            True for the frames that were encoded.
        frame_tokens (`torch.FloatTensor` of shape `(batch_size, num_frames, pooled_tokens_per_frame, hidden_size)`,
        *optional*):
            Adaptive-average-pooled patch grid of every frame (row-major over the pooled grid); zeros at padding
            frames. Only returned when the encoder was built with `pooled_tokens_per_frame`.
        tower_outputs (`BaseModelOutput`, *optional*):
            The CLIP tower on the encoded frames (batch-major, padding frames left out): `last_hidden_state`
            `(num_encoded_frames, 1 + num_patches, hidden_size)` is hidden state `feature_layer` (the one the tokens
            are read from, post-layernormed if configured); `hidden_states` / `attentions` of every layer when asked
            for with `output_hidden_states` / `output_attentions`. `None` when no frame was encoded.
    """

    temporal_tokens: torch.FloatTensor | None = None
    spatial_tokens: torch.FloatTensor | None = None
    frame_mask: torch.BoolTensor | None = None
    frame_tokens: torch.FloatTensor | None = None
    tower_outputs: BaseModelOutput | None = None


class ClipFrameEncoder(nn.Module):
    """Encodes video frames with a CLIP vision tower into temporal ([CLS]) and spatial (time-pooled patch) tokens.

    Args:
        config (`CLIPVisionConfig`):
            Configuration of the vision tower (ViT-L/14 for the Audio-Visual LLM).
        feature_layer (`int`, *optional*, defaults to -1):
            Which hidden state of the tower the tokens are read from, indexed like `CLIPVisionModel(...,
            output_hidden_states=True).hidden_states`: 0 is the embedding output (after `pre_layrnorm`), `i` the
            output of encoder layer `i`, -1 the last layer (= `CLIPVisionModel`'s `last_hidden_state`), -2 the
            penultimate layer (the LLaVA / Video-ChatGPT choice). Layers after the chosen one are not run. The
            Audio-Visual LLM paper does not state the layer; -1 is the default because it is what
            `CLIPVisionModel` returns as its sequence output.
        apply_post_layernorm (`bool`, *optional*, defaults to `False`):
            Apply the tower's `post_layernorm` to every token read (temporal, spatial and pooled). With the default
            `feature_layer=-1`, `True` makes the temporal tokens equal to `CLIPVisionModel`'s `pooler_output`.
        pooled_tokens_per_frame (`int`, *optional*):
            If set, also return `frame_tokens`: each frame's patch grid adaptively average-pooled to a
            `sqrt(N) x sqrt(N)` grid. Must be a perfect square not larger than the number of patches.
    """

    def __init__(
        self,
        config: CLIPVisionConfig,
        feature_layer: int = -1,
        apply_post_layernorm: bool = False,
        pooled_tokens_per_frame: int | None = None,
    ):
        super().__init__()
        num_layers = config.num_hidden_layers
        if not -(num_layers + 1) <= feature_layer <= num_layers:
            raise ValueError(
                f"feature_layer={feature_layer} is out of range for a CLIP tower with {num_layers} layers "
                f"(valid: {-(num_layers + 1)} .. {num_layers})."
            )
        num_patches = clip_num_patches(config)
        if pooled_tokens_per_frame is not None:
            side = math.isqrt(max(pooled_tokens_per_frame, 0))
            if pooled_tokens_per_frame <= 0 or side * side != pooled_tokens_per_frame or side * side > num_patches:
                raise ValueError(
                    f"pooled_tokens_per_frame={pooled_tokens_per_frame} must be a positive perfect square "
                    f"(1, 4, 9, 16, ...) no larger than the {num_patches} patches of a frame."
                )
        self.config = config
        self.feature_layer = feature_layer
        self.apply_post_layernorm = apply_post_layernorm
        self.pooled_tokens_per_frame = pooled_tokens_per_frame
        self.vision_model = CLIPVisionModel._from_config(config)

    @property
    def hidden_size(self) -> int:
        """Width D of every token this encoder returns."""
        return self.config.hidden_size

    @property
    def num_patches(self) -> int:
        """P, the number of spatial tokens (patch positions of one frame)."""
        return clip_num_patches(self.config)

    @property
    def num_layers_run(self) -> int:
        """How many encoder layers a forward pass runs (`feature_layer` made non-negative)."""
        return self.feature_layer % (self.config.num_hidden_layers + 1)

    def load_tower_state_dict(self, state_dict: Mapping[str, torch.Tensor], strict: bool = True):
        """Load CLIP vision weights into `self.vision_model`.

        Accepts the keys of a `CLIPModel` checkpoint (`vision_model.*`; text tower, projections and `logit_scale` are
        ignored), of this module, or of a transformers-5 `CLIPVisionModel` checkpoint (no prefix). Returns the
        `load_state_dict` result of the tower.
        """
        if any(key.startswith(TOWER_PREFIX) for key in state_dict):
            tower = {k[len(TOWER_PREFIX) :]: v for k, v in state_dict.items() if k.startswith(TOWER_PREFIX)}
        else:
            tower = dict(state_dict)
        return self.vision_model.load_state_dict(tower, strict=strict)

    def _encode_frames(self, pixel_values: torch.Tensor, **kwargs) -> BaseModelOutput:
        """(N, 3, H, W) frames -> hidden state `feature_layer` (N, 1 + P, D) (post-layernormed if configured) as
        `last_hidden_state`, with the tower's per-layer outputs when `kwargs` ask for them."""
        tower = self.vision_model
        if kwargs.get("output_hidden_states") or kwargs.get("output_attentions"):
            # the whole tower through transformers' output capturing (the layers after feature_layer run too)
            outputs = tower(pixel_values, output_hidden_states=True, output_attentions=kwargs.get("output_attentions"))
            selected = outputs.hidden_states[self.feature_layer]
            hidden_states = outputs.hidden_states if kwargs.get("output_hidden_states") else None
            attentions = outputs.attentions
        else:  # only the layers up to feature_layer
            selected = tower.pre_layrnorm(tower.embeddings(pixel_values))  # (N, 1 + P, D)
            for layer in tower.encoder.layers[: self.num_layers_run]:
                selected = layer(selected, None)
            hidden_states = attentions = None
        if self.apply_post_layernorm:
            selected = tower.post_layernorm(selected)
        return BaseModelOutput(last_hidden_state=selected, hidden_states=hidden_states, attentions=attentions)

    def forward(
        self, pixel_values_videos: torch.Tensor, video_frame_mask: torch.Tensor | None = None, **kwargs
    ) -> ClipFrameOutput:
        """
        Args:
            pixel_values_videos (`torch.FloatTensor` of shape `(batch_size, num_frames, 3, height, width)`):
                CLIP-normalised frames (as `CLIPImageProcessor` produces them); `height == width == image_size`.
            video_frame_mask (`torch.BoolTensor` of shape `(batch_size, num_frames)`, *optional*):
                True for real frames, False for padding. Padding frames are not encoded. Defaults to all True.
            kwargs: `output_hidden_states` / `output_attentions` for the tower's per-layer outputs (`tower_outputs`).

        Returns:
            [`ClipFrameOutput`].
        """
        if pixel_values_videos.dim() != 5 or pixel_values_videos.shape[2] != self.config.num_channels:
            raise ValueError(
                f"pixel_values_videos must have shape (batch, frames, {self.config.num_channels}, height, width); "
                f"got {tuple(pixel_values_videos.shape)}."
            )
        batch_size, num_frames, _, height, width = pixel_values_videos.shape
        size = self.config.image_size
        if height != size or width != size:
            raise ValueError(
                f"pixel_values_videos frames are {height}x{width} but the CLIP tower expects {size}x{size}."
            )
        if video_frame_mask is None:
            video_frame_mask = torch.ones(batch_size, num_frames, dtype=torch.bool, device=pixel_values_videos.device)
        elif video_frame_mask.shape != (batch_size, num_frames):
            raise ValueError(
                f"video_frame_mask has shape {tuple(video_frame_mask.shape)} but pixel_values_videos has "
                f"(batch, frames) = {(batch_size, num_frames)}."
            )
        frame_mask = video_frame_mask.to(device=pixel_values_videos.device, dtype=torch.bool)

        weight = self.vision_model.embeddings.patch_embedding.weight
        hidden_size, num_patches = self.hidden_size, self.num_patches
        temporal = weight.new_zeros(batch_size, num_frames, hidden_size)  # (B, T, D)
        spatial = weight.new_zeros(batch_size, num_patches, hidden_size)  # (B, P, D)
        pooled = tower_outputs = None
        if self.pooled_tokens_per_frame is not None:
            pooled = weight.new_zeros(batch_size, num_frames, self.pooled_tokens_per_frame, hidden_size)

        if bool(frame_mask.any()):
            frames = pixel_values_videos[frame_mask].to(dtype=weight.dtype)  # (N_valid, 3, H, W), batch-major order
            tower_outputs = self._encode_frames(frames, **kwargs)
            hidden_states = tower_outputs.last_hidden_state  # (N_valid, 1 + P, D)
            cls_tokens, patch_tokens = hidden_states[:, 0], hidden_states[:, 1:]  # (N_valid, D), (N_valid, P, D)
            temporal = temporal.index_put((frame_mask,), cls_tokens)

            sample_index = frame_mask.nonzero()[:, 0]  # (N_valid,) sample of each encoded frame
            frame_counts = frame_mask.sum(dim=1)  # (B,)
            patch_sums = spatial.index_add(0, sample_index, patch_tokens)  # (B, P, D)
            divisor = frame_counts.clamp(min=1).to(patch_sums.dtype)[:, None, None]
            spatial = patch_sums / divisor  # samples without frames stay 0 / 1 = 0

            if pooled is not None:
                grid = size // self.config.patch_size
                side = math.isqrt(self.pooled_tokens_per_frame)
                patch_grid = patch_tokens.transpose(1, 2).reshape(-1, hidden_size, grid, grid)  # (N_valid, D, g, g)
                pooled_grid = nn.functional.adaptive_avg_pool2d(patch_grid, side)  # (N_valid, D, s, s)
                pooled_tokens = pooled_grid.flatten(2).transpose(1, 2)  # (N_valid, N, D)
                pooled = pooled.index_put((frame_mask,), pooled_tokens)

        return ClipFrameOutput(
            temporal_tokens=temporal,
            spatial_tokens=spatial,
            frame_mask=frame_mask,
            frame_tokens=pooled,
            tower_outputs=tower_outputs,
        )


__all__ = ["ClipFrameEncoder", "ClipFrameOutput"]
