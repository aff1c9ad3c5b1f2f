"""Public helpers for tests (this package's and outside tools'): tiny configs and processors of the real
architectures and synthetic media, re-exported from `transformers_av.presets.tiny` and `transformers_av.synthetic`
(where the package's own workflows take them from), reference implementations (`testing.reference`) and a local Hub
server (`testing.hub_server`).

Nothing here downloads anything: models are built from configs with random weights, media are generated.
"""

from ..presets.tiny import (
    tiny_av_llm_config,
    tiny_av_llm_processor,
    tiny_audio_config,
    tiny_clap_audio_config,
    tiny_clip_vision_config,
    tiny_favor_config,
    tiny_processor,
    tiny_qformer_config,
    tiny_speech_config,
    tiny_text_config,
    tiny_vision_config,
)
from ..synthetic.media import (
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
    "tiny_av_llm_config",
    "tiny_av_llm_processor",
    "tiny_clap_audio_config",
    "tiny_clip_vision_config",
    "tiny_favor_config",
    "tiny_processor",
    "tiny_qformer_config",
    "tiny_speech_config",
    "tiny_text_config",
    "tiny_vision_config",
    "write_video",
    "write_wav",
]
