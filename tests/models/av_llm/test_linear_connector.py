"""Audio-Visual LLM (Shu et al.) linear connector (`models/av_llm/linear_connector.py`): the layout is written out
by hand."""

from __future__ import annotations

import pytest
import torch

from transformers_av.models.av_llm.linear_connector import LinearAudioVisualConnector
from transformers_av.models.av_llm.token_counts import linear_connector_token_count


def _marked_connector() -> LinearAudioVisualConnector:
    """Dv = Da = 2 -> D_llm = 4: each projection copies its input to dims 0-1 and writes a marker in dim 2."""
    connector = LinearAudioVisualConnector(vision_hidden_size=2, audio_hidden_size=2, text_hidden_size=4)
    copy = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0], [0.0, 0.0]])
    for marker, layer in enumerate(
        (connector.temporal_projection, connector.spatial_projection, connector.audio_projection), start=1
    ):
        with torch.no_grad():
            layer.weight.copy_(copy)
            layer.bias.copy_(torch.tensor([0.0, 0.0, float(marker), 0.0]))
    return connector


def test_linear_connector_layout_by_hand():
    connector = _marked_connector()
    temporal = torch.tensor([[[1.0, 1], [9, 9], [2, 2]], [[9, 9], [9, 9], [9, 9]], [[3, 3], [4, 4], [5, 5]]])
    frame_mask = torch.tensor([[True, False, True], [False, False, False], [True, True, True]])
    spatial = torch.tensor([[[10.0, 0], [11, 0]], [[9, 9], [9, 9]], [[12, 0], [13, 0]]])  # (B=3, P=2, 2)
    audio = torch.tensor([[[20.0, 1], [21, 1], [9, 9]], [[9, 9], [22, 1], [23, 1]], [[9, 9], [9, 9], [9, 9]]])
    segment_mask = torch.tensor([[True, True, False], [False, True, True], [False, False, False]])

    embeds, counts = connector(temporal, frame_mask, spatial, audio, segment_mask)

    def t(a, b):  # temporal / spatial / audio token as the marked projections write it
        return [a, b, 1.0, 0.0]

    def s(a, b):
        return [a, b, 2.0, 0.0]

    def a(x, y):
        return [x, y, 3.0, 0.0]

    pad = [0.0, 0.0, 0.0, 0.0]
    expected = torch.tensor(
        [
            [t(1, 1), t(2, 2), s(10, 0), s(11, 0), a(20, 1), a(21, 1)],  # video + audio
            [a(22, 1), a(23, 1), pad, pad, pad, pad],  # no valid frame: audio only
            [t(3, 3), t(4, 4), t(5, 5), s(12, 0), s(13, 0), pad],  # no valid segment: video only
        ]
    )
    assert torch.equal(counts, torch.tensor([6, 2, 5]))
    assert torch.equal(embeds, expected)
    assert counts.tolist() == [
        linear_connector_token_count(2, 2, 2, visual=True, audio=True),
        linear_connector_token_count(0, 2, 2, visual=False, audio=True),
        linear_connector_token_count(3, 2, 0, visual=True, audio=False),
    ]

    embeds.sum().backward()
    for layer in (connector.temporal_projection, connector.spatial_projection, connector.audio_projection):
        assert layer.weight.grad is not None and layer.weight.grad.abs().sum() > 0


def test_linear_connector_absent_modality_is_not_computed():
    connector = _marked_connector()
    calls: list[str] = []
    for name in ("temporal_projection", "spatial_projection", "audio_projection"):
        getattr(connector, name).register_forward_hook(lambda *_, name=name: calls.append(name))
    audio = torch.tensor([[[5.0, 6.0], [7.0, 8.0]]])
    with torch.no_grad():
        embeds, counts = connector(audio_tokens=audio)
    assert calls == ["audio_projection"]
    assert torch.equal(counts, torch.tensor([2]))
    assert torch.equal(embeds, torch.tensor([[[5.0, 6.0, 3.0, 0.0], [7.0, 8.0, 3.0, 0.0]]]))

    calls.clear()
    with torch.no_grad():
        embeds, counts = connector(torch.ones(2, 1, 2), None, torch.zeros(2, 3, 2))
    assert calls == ["temporal_projection", "spatial_projection"]
    assert counts.tolist() == [4, 4] and embeds.shape == (2, 4, 4)
    assert torch.equal(embeds[:, 1:, 2], torch.full((2, 3), 2.0))


def test_linear_connector_and_count_errors():
    assert linear_connector_token_count(8, 256, 4, visual=True, audio=True) == 268
    assert linear_connector_token_count(8, 256, 4, visual=True, audio=False) == 264
    assert linear_connector_token_count(0, 256, 4, visual=False, audio=True) == 4
    assert linear_connector_token_count(0, 256, 0, visual=False, audio=False) == 0
    with pytest.raises(ValueError, match="visual=True needs num_frames >= 1"):
        linear_connector_token_count(0, 256, 4, visual=True, audio=True)
    with pytest.raises(ValueError, match="audio=True needs num_segments >= 1"):
        linear_connector_token_count(2, 256, 0, visual=True, audio=True)
    with pytest.raises(ValueError, match="num_patches must be a non-negative integer"):
        linear_connector_token_count(2, -1, 0, visual=True, audio=False)

    connector = LinearAudioVisualConnector(vision_hidden_size=2, audio_hidden_size=None, text_hidden_size=4)
    with pytest.raises(ValueError, match="no audio projection"):
        connector(audio_tokens=torch.zeros(1, 4, 2))
    with pytest.raises(ValueError, match="must be given together"):
        connector(temporal_tokens=torch.zeros(1, 2, 2))
    with pytest.raises(ValueError, match="temporal_tokens has width 3"):
        connector(torch.zeros(1, 2, 3), None, torch.zeros(1, 4, 3))
    with pytest.raises(ValueError, match="frame_mask has shape"):
        connector(torch.zeros(1, 2, 2), torch.ones(1, 3, dtype=torch.bool), torch.zeros(1, 4, 2))
    with pytest.raises(ValueError, match="needs vision_hidden_size or audio_hidden_size"):
        LinearAudioVisualConnector(None, None, 4)
