"""Decoding real media for the processors -- no model knowledge here.

* `video`: `load_video` -> `VideoClip` (streaming decode; samplers in `frame_sampling`, per-frame conversion in
  `frame_conversion`, frames nothing needs left undecoded by `frame_skipping`);
* `audio`: `load_audio` -> `AudioClip`, `has_audio_track`, `resample_audio`;
* `image`: `load_image` (every Pillow mode on its own scale);
* `probe`: `probe_media` / `find_bad_media`, checking files up front (what `transformers-av validate-data` runs);
* `orientation` (display matrix -> upright frames), `remote` (``http(s)://`` inputs), `progress` (long decodes);
* `errors`: the error types every loader raises; `sources` / `arguments`: input kinds and argument checks they share.

The processors import from the submodules (their saved remote code is a flat copy of the modules they reach); other
code may use the names below.
"""

from .audio import AudioClip, has_audio_track, load_audio, resample_audio
from .errors import MediaDecodeError, MediaDownloadError, NoAudioTrackError, NoVideoTrackError
from .frame_sampling import OFFICIAL_CLIP_SECONDS, OFFICIAL_FRAMES_PER_CLIP, OFFICIAL_MAX_CLIPS, clip_ends_timepoints
from .image import load_image
from .probe import MediaProbe, find_bad_media, probe_media
from .video import VideoClip, load_video

__all__ = [
    "OFFICIAL_CLIP_SECONDS",
    "OFFICIAL_FRAMES_PER_CLIP",
    "OFFICIAL_MAX_CLIPS",
    "AudioClip",
    "MediaDecodeError",
    "MediaDownloadError",
    "MediaProbe",
    "NoAudioTrackError",
    "NoVideoTrackError",
    "VideoClip",
    "clip_ends_timepoints",
    "find_bad_media",
    "has_audio_track",
    "load_audio",
    "load_image",
    "load_video",
    "probe_media",
    "resample_audio",
]
