"""Decoding real media (video files, sound tracks, audio files, images) for the processors; see `media.video`."""

from .video import (
    OFFICIAL_CLIP_SECONDS,
    OFFICIAL_FRAMES_PER_CLIP,
    OFFICIAL_MAX_CLIPS,
    AudioClip,
    MediaDecodeError,
    NoAudioTrackError,
    NoVideoTrackError,
    VideoClip,
    clip_ends_timepoints,
    has_audio_track,
    load_audio,
    load_image,
    load_video,
    resample_audio,
)

__all__ = [
    "OFFICIAL_CLIP_SECONDS",
    "OFFICIAL_FRAMES_PER_CLIP",
    "OFFICIAL_MAX_CLIPS",
    "AudioClip",
    "MediaDecodeError",
    "NoAudioTrackError",
    "NoVideoTrackError",
    "VideoClip",
    "clip_ends_timepoints",
    "has_audio_track",
    "load_audio",
    "load_image",
    "load_video",
    "resample_audio",
]
