"""Leaf parts (encoders and connectors) that a model composes; they are not registered here.

Audio-Visual LLM (Shu et al., 2023) parts: a CLIP frame encoder, a CLAP segment encoder and a linear connector.
"""

from .clap_segments import ClapSegmentEncoder, clap_flat_token_size, split_into_segments
from .clip_frames import ClipFrameEncoder, ClipFrameOutput, clip_num_patches
from .linear_connector import LinearAudioVisualConnector, linear_connector_token_count

__all__ = [
    "ClapSegmentEncoder",
    "ClipFrameEncoder",
    "ClipFrameOutput",
    "LinearAudioVisualConnector",
    "clap_flat_token_size",
    "clip_num_patches",
    "linear_connector_token_count",
    "split_into_segments",
]
