"""Frame-level synchronisation of visual tokens and audio frames (FAVOR / video-SALMONN)."""

from __future__ import annotations

import torch


def frame_validity(counts: torch.Tensor, num_frames: int) -> torch.Tensor:
    """(B,) frame counts -> (B, num_frames) bool, True for frames < count."""
    return torch.arange(num_frames, device=counts.device)[None, :] < counts[:, None]


def sync_audio_to_frames(
    visual_tokens: torch.Tensor,
    audio_tokens: torch.Tensor,
    video_frame_counts: torch.Tensor,
    audio_frame_counts: torch.Tensor,
    audio_frames_per_frame: int,
    modality_mask: torch.Tensor | None = None,
    interleave: bool = True,
) -> torch.Tensor:
    """Pair every visual token of a frame with one audio frame of the same 0.5 s.

    Token k of frame t becomes `[visual_k(t) | audio(t * audio_frames_per_frame + k)]` for
    `k < audio_frames_per_frame` and `[visual_k(t) | 0]` above, so a frame holds as many joint tokens as visual ones.

    Args:
        visual_tokens: (B, T_v, N, Dv) visual tokens per frame (anything beyond a sample's count is ignored).
        audio_tokens: (B, S, Da) audio frames, already projected (Whisper and BEATs streams concatenated).
        video_frame_counts, audio_frame_counts: (B,) frames of real content per modality and sample.
        audio_frames_per_frame: audio frames per synchronised frame (25 at 50 Hz and 0.5 s).
        modality_mask: optional (B, 2) [video, audio] multipliers; a masked modality becomes true zeros.
        interleave: `False` is the ablation without synchronisation: the frame's visual tokens `[visual_k | 0]`
            and audio tokens `[0 | audio_k]` are laid side by side (2N tokens) instead of paired in N tokens.

    Returns:
        (B, T, N, Dv + Da) joint tokens (N -> 2N without `interleave`) with T = max over the batch of max(video,
        audio) frames. Frames beyond a modality's count are zeros, exactly as the official implementation zero-pads
        the shorter stream.
    """
    batch_size, _, tokens_per_frame, _ = visual_tokens.shape
    audio_frames_available = audio_tokens.shape[1] // audio_frames_per_frame
    num_frames = int(torch.maximum(video_frame_counts, audio_frame_counts).max().item()) if batch_size else 0
    num_frames = max(num_frames, 1)

    # (B, S, Da) -> (B, T_a, 25, Da) -> pad frames to T and tokens 25 -> N
    audio = audio_tokens[:, : audio_frames_available * audio_frames_per_frame]
    audio = audio.reshape(batch_size, audio_frames_available, audio_frames_per_frame, audio_tokens.shape[-1])
    audio = _pad_or_trim_frames(audio, num_frames)
    audio = torch.nn.functional.pad(audio, (0, 0, 0, tokens_per_frame - audio_frames_per_frame))
    visual = _pad_or_trim_frames(visual_tokens, num_frames)

    video_keep = frame_validity(video_frame_counts, num_frames).to(visual.dtype)  # (B, T)
    audio_keep = frame_validity(audio_frame_counts, num_frames).to(audio.dtype)
    if modality_mask is not None:
        video_keep = video_keep * modality_mask[:, 0:1].to(visual.dtype)
        audio_keep = audio_keep * modality_mask[:, 1:2].to(audio.dtype)
    visual = visual * video_keep[:, :, None, None]
    audio = audio * audio_keep[:, :, None, None]
    if not interleave:  # each stream zero in the other's features: (B, T, 2N, Dv + Da)
        return torch.cat([_pad_features(visual, 0, audio.shape[-1]), _pad_features(audio, visual.shape[-1], 0)], 2)
    return torch.cat([visual, audio], dim=-1)  # (B, T, N, Dv + Da)


def _pad_features(tokens: torch.Tensor, before: int, after: int) -> torch.Tensor:
    """`tokens` (..., D) zero-padded to (..., before + D + after) along the feature axis."""
    return torch.nn.functional.pad(tokens, (before, after))


def _pad_or_trim_frames(frames: torch.Tensor, num_frames: int) -> torch.Tensor:
    if frames.shape[1] >= num_frames:
        return frames[:, :num_frames]
    return torch.nn.functional.pad(frames, (0, 0, 0, 0, 0, num_frames - frames.shape[1]))


__all__ = ["sync_audio_to_frames", "frame_validity"]
