"""Rotated videos come out upright: `transformers_av.media.orientation` on clips written with a real display matrix
(PyAV's `VideoStream.set_display_rotation`, the side data a phone writes), and the older `rotate` tag."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

import av

from transformers_av.media import load_video  # noqa: E402
from transformers_av.media.orientation import Orientation, frame_orientation, orientation_from_matrix  # noqa: E402
from transformers_av.synthetic.media import make_frames  # noqa: E402


def write_rotated(path: Path, frames: np.ndarray, fps: int, degrees: int, hflip: bool = False, vflip: bool = False):
    """A lossless mp4 (libx264rgb, crf 0) whose display matrix says: turn `degrees` counter-clockwise, then mirror."""
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264rgb", rate=fps)
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "rgb24"
        stream.options = {"crf": "0"}
        stream.set_display_rotation(degrees, hflip=hflip, vflip=vflip)
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())
    return path


def upright(frames: np.ndarray, degrees: int, hflip: bool, vflip: bool) -> np.ndarray:
    """What a player shows (PyAV's documented meaning of `set_display_rotation`): turned, then mirrored."""
    shown = np.rot90(frames, degrees // 90, axes=(1, 2))
    if hflip:
        shown = shown[:, :, ::-1]
    if vflip:
        shown = shown[:, ::-1]
    return shown


@pytest.fixture(scope="module")
def source_frames():
    return make_frames(6, 24, 40)  # 6 frames, landscape 24 x 40, a moving square: no symmetry to hide a mistake


@pytest.mark.parametrize(
    ("degrees", "hflip", "vflip"),
    [(90, False, False), (180, False, False), (270, False, False), (-90, False, False), (0, True, False),
     (0, False, True), (90, True, False), (90, False, True)],
)
def test_display_matrix_makes_frames_upright(tmp_path, source_frames, degrees, hflip, vflip):
    path = write_rotated(tmp_path / "phone.mp4", source_frames, 4, degrees, hflip, vflip)
    clip = load_video(path, fps=4)
    expected = upright(source_frames, degrees, hflip, vflip)
    np.testing.assert_array_equal(clip.frames, expected)  # lossless: exactly the upright pixels
    assert clip.source_size == expected.shape[1:3]
    assert clip.frames.flags.c_contiguous


def test_rotation_with_downscale_and_transform(tmp_path, source_frames):
    """`size=` is the upright size; a frame transform sees upright frames."""
    path = write_rotated(tmp_path / "portrait.mp4", source_frames, 4, 90)
    expected = upright(source_frames, 90, False, False)  # (6, 40, 24, 3): portrait
    small = load_video(path, fps=4, size=(20, 12))
    assert small.frames.shape == (6, 20, 12, 3) and small.source_size == (40, 24)
    seen = []
    clip = load_video(path, fps=4, frame_transform=lambda frame: seen.append(frame.shape) or frame[::2, ::2])
    assert seen == [(40, 24, 3)] * 6
    np.testing.assert_array_equal(clip.frames, expected[:, ::2, ::2])


def test_no_display_matrix_is_untouched(tmp_path, source_frames):
    path = write_rotated(tmp_path / "plain.mp4", source_frames, 4, 0)
    clip = load_video(path, fps=4)
    np.testing.assert_array_equal(clip.frames, source_frames)
    assert clip.source_size == (24, 40)


def test_matrix_and_rotate_tag_decoding():
    # av_display_rotation_set(matrix, -90) (a counter-clockwise quarter turn), 16.16 fixed point
    assert orientation_from_matrix([0, -65536, 0, 65536, 0, 0, 0, 0, 1 << 30]) == Orientation(1, False)
    # a pure left-right mirror (av_display_matrix_flip(hflip=1) of the identity)
    assert orientation_from_matrix([-65536, 0, 0, 0, 65536, 0, 0, 0, 1 << 30]) == Orientation(0, True)
    # the 36 bytes of the side data read the same
    raw = np.array([65536, 0, 0, 0, -65536, 0, 0, 0, 1 << 30], dtype="<i4").tobytes()
    assert orientation_from_matrix(raw) == Orientation(2, True)  # a vertical flip = mirror of a half turn
    # no side data: the `rotate` tag, clockwise degrees (a phone's portrait video says 90)
    bare = SimpleNamespace(side_data=[])
    assert frame_orientation(bare, "90") == Orientation(3, False)
    assert frame_orientation(bare, None) == Orientation(0, False)
    image = np.arange(6).reshape(2, 3)
    np.testing.assert_array_equal(Orientation(3, False).apply(image), np.rot90(image, -1))  # clockwise
