"""Proof of pluggability: the FAVOR causal multi-resolution Q-Former over CLIP frames + Whisper audio, built from a
configuration alone (the vision config's `model_type` picks the registered visual encoder part), trains, and saves
and loads like any FAVOR model."""

import pytest
import torch
from transformers import AutoModelForMultimodalLM

from transformers_av import FavorForConditionalGeneration
from transformers_av.models.favor.visual_encoders import (
    ClipFrameTokens,
    InstructBlipFrameEncoder,
    register_visual_encoder,
    visual_encoder_class,
)
from transformers_av.presets.tiny import tiny_favor_config
from transformers_av.presets.tiny import tiny_clip_vision_config
from transformers_av.presets.tiny import tiny_processor
from transformers_av.training import FavorDataCollator, load_av_dataset, make_sync_task

IMAGE = 84  # a 6 x 6 patch grid: 36 tokens per frame, one per patch


def clip_favor_config():
    # only configuration: a CLIP vision config instead of InstructBLIP's; 36 (square) tokens per frame
    return tiny_favor_config("favor", vision_config=tiny_clip_vision_config(IMAGE).to_dict(), num_query_tokens=36)


def test_the_vision_config_model_type_picks_the_part():
    assert visual_encoder_class("instructblip_vision_model") is InstructBlipFrameEncoder
    model = FavorForConditionalGeneration(clip_favor_config())
    assert isinstance(model.model.visual_encoder, ClipFrameTokens)
    assert model.config.visual_feature_size == model.config.vision_config.hidden_size
    with pytest.raises(ValueError, match="No visual encoder part is registered.*siglip_vision_model"):
        visual_encoder_class("siglip_vision_model")
    with pytest.raises(TypeError, match="not a visual encoder part"):
        register_visual_encoder("mine", object)


def test_favor_connector_over_clip_frames_trains_and_round_trips(tmp_path):
    torch.manual_seed(0)
    config = clip_favor_config()
    model = FavorForConditionalGeneration(config)
    model.freeze_encoders()
    processor = tiny_processor(config)
    make_sync_task(tmp_path / "data", 4, seconds=2, fps=2, seed=0)
    batch = FavorDataCollator(processor, padding_side="right")(list(load_av_dataset(str(tmp_path / "data" / "data.jsonl"))))
    assert batch["pixel_values_videos"].shape[-2:] == (IMAGE, IMAGE)

    # the CLIP tokens really reach the LLM: other pixels, other logits
    model.eval()
    with torch.no_grad():
        logits = model(**batch).logits
        changed = model(**{**batch, "pixel_values_videos": batch["pixel_values_videos"].flip(-1)}).logits
    assert not torch.allclose(logits, changed)  # measured 4e-4 apart: 40x allclose's rtol, far above round-off

    model.train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=3e-3)
    losses = []
    for _ in range(20):
        loss = model(**batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0], losses
    assert all(p.grad is None for p in model.model.visual_encoder.parameters())  # frozen CLIP: no gradient

    model.eval()
    model.save_pretrained(tmp_path / "clip-favor")
    loaded = AutoModelForMultimodalLM.from_pretrained(tmp_path / "clip-favor").eval()
    assert isinstance(loaded.model.visual_encoder, ClipFrameTokens)
    for name, tensor in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], tensor), name
    with torch.no_grad():
        assert torch.equal(loaded(**batch).logits, model(**batch).logits)
