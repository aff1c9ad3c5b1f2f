"""Public helpers for tests, benchmarks and demos: tiny configs of the real architectures and synthetic media.

Nothing here downloads anything: models are built from configs with random weights, media are generated.
"""

from .configs import (
    tiny_audio_config,
    tiny_favor_config,
    tiny_qformer_config,
    tiny_speech_config,
    tiny_text_config,
    tiny_vision_config,
)
from .media import (
    SyntheticClip,
    make_av_clip,
    make_beep_track,
    make_frames,
    make_image,
    make_tone,
    write_video,
    write_wav,
)

__all__ = [
    "SyntheticClip",
    "make_av_clip",
    "make_beep_track",
    "make_frames",
    "make_image",
    "make_tone",
    "tiny_audio_config",
    "tiny_favor_config",
    "tiny_qformer_config",
    "tiny_speech_config",
    "tiny_text_config",
    "tiny_vision_config",
    "write_video",
    "write_wav",
]
