"""Frame-level synchronisation: token k of frame t = [visual_k(t) | audio(25 t + k)], zeros where a stream ends."""

import torch

from transformers_av.models.favor.sync import frame_validity, sync_audio_to_frames


def test_frame_validity():
    assert frame_validity(torch.tensor([0, 2, 3]), 3).tolist() == [
        [False, False, False], [True, True, False], [True, True, True]]


def test_tokens_pair_each_visual_token_with_the_audio_frame_of_the_same_half_second():
    # 1 sample, 2 video frames of N=4 tokens (Dv=1), 3 audio frames per synchronised frame (Da=1), 2 frames of audio
    visual = torch.arange(8, dtype=torch.float32).reshape(1, 2, 4, 1) + 100
    audio = torch.arange(6, dtype=torch.float32).reshape(1, 6, 1) + 1
    joint = sync_audio_to_frames(visual, audio, torch.tensor([2]), torch.tensor([2]), audio_frames_per_frame=3)
    assert joint.shape == (1, 2, 4, 2)
    assert joint[0, :, :, 0].tolist() == [[100, 101, 102, 103], [104, 105, 106, 107]]
    # k < 3 reads audio frame 3 t + k; the 4th token of a frame gets zero audio
    assert joint[0, :, :, 1].tolist() == [[1, 2, 3, 0], [4, 5, 6, 0]]


def test_the_shorter_stream_is_zero_padded_and_the_batch_spans_the_longest_sample():
    visual = torch.ones(2, 3, 2, 1)
    audio = torch.ones(2, 8, 1)  # 4 frames of 2 audio frames
    joint = sync_audio_to_frames(visual, audio, torch.tensor([3, 1]), torch.tensor([1, 4]), audio_frames_per_frame=2)
    assert joint.shape == (2, 4, 2, 2)  # T = max over samples of max(video, audio) = 4
    assert joint[0, :, 0, 0].tolist() == [1, 1, 1, 0] and joint[0, :, 0, 1].tolist() == [1, 0, 0, 0]
    assert joint[1, :, 0, 0].tolist() == [1, 0, 0, 0] and joint[1, :, 0, 1].tolist() == [1, 1, 1, 1]


def test_a_masked_modality_becomes_true_zeros():
    visual, audio = torch.randn(1, 2, 3, 2), torch.randn(1, 4, 2)
    counts = torch.tensor([2])
    joint = sync_audio_to_frames(visual, audio, counts, counts, 2, modality_mask=torch.tensor([[1.0, 0.0]]))
    assert torch.equal(joint[..., :2], visual) and torch.count_nonzero(joint[..., 2:]) == 0
    joint = sync_audio_to_frames(visual, audio, counts, counts, 2, modality_mask=torch.tensor([[0.0, 1.0]]))
    assert torch.count_nonzero(joint[..., :2]) == 0
    assert torch.equal(joint[0, :, :2, 2:], audio.reshape(2, 2, 2))


def test_no_content_still_gives_one_fully_zero_frame():
    joint = sync_audio_to_frames(torch.zeros(1, 0, 2, 1), torch.zeros(1, 0, 1), torch.tensor([0]), torch.tensor([0]), 1)
    assert joint.shape == (1, 1, 2, 2) and torch.count_nonzero(joint) == 0
