"""A batch that lacks a modality still runs every encoder, projection and the connector while training when
`config.run_absent_encoders` asks for it (DDP / FSDP / ZeRO ranks then run the same modules), without changing any
value; and the model copes with batches whose samples hold no frames at all."""

import importlib.util
from pathlib import Path

import pytest
import torch
from huggingface_hub.errors import StrictDataclassFieldValidationError

from transformers_av import FavorForConditionalGeneration
from transformers_av.presets.tiny import tiny_favor_config

# the FAVOR model tests' batch builders, loaded from the sibling file (test modules are not importable by name)
_spec = importlib.util.spec_from_file_location("favor_modeling_tests", Path(__file__).with_name("test_modeling_favor.py"))
_favor_modeling_tests = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_favor_modeling_tests)
IMAGE, collate, sample_media = _favor_modeling_tests.IMAGE, _favor_modeling_tests.collate, _favor_modeling_tests.sample_media


def trainable_model(mode, variant="video_salmonn"):
    torch.manual_seed(0)
    config = tiny_favor_config(variant, image_size=IMAGE, run_absent_encoders=mode, connector_dropout=0.0)
    config.text_config.attention_dropout = 0.0
    model = FavorForConditionalGeneration(config)
    model.freeze_encoders()
    return model.train()


BATCHES = {
    "video_only": ([sample_media(4, 0, seed=1), sample_media(3, 0, seed=2)], False),
    "audio_only": ([sample_media(0, 2.0, seed=3), sample_media(0, 1.5, seed=4)], True),
    "text_only": (None, False),
}


def build_batch(model, name):
    samples, _ = BATCHES[name]
    if samples is None:
        ids = torch.tensor([[1, 5, 6, 7, 8], [1, 9, 10, 11, 12]])
        return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": ids.clone()}
    batch, _ = collate(model, samples, [([1, 5], [6, 7]), ([1, 9], [10, 11])])
    batch["labels"] = batch["input_ids"].masked_fill(batch["input_ids"] == model.config.audio_visual_token_id, -100)
    return batch


def gradients(model, batch):
    """(loss, {trainable parameter: grad or None}, names of the modules that ran)."""
    modules = {**model.model.encoder_modules(), "connector": model.model.connector}
    ran = set()
    hooks = [m.register_forward_hook(lambda *args, name=name: ran.add(name)) for name, m in modules.items()]
    model.zero_grad(set_to_none=True)
    output = model(**batch)
    output.loss.backward()
    for hook in hooks:
        hook.remove()
    return output.loss.detach(), {n: p.grad for n, p in model.named_parameters() if p.requires_grad}, ran


@pytest.mark.parametrize("variant", ["video_salmonn", "favor"])
@pytest.mark.parametrize("name", list(BATCHES))
def test_absent_modalities_run_with_zero_contribution(name, variant):
    skipping, running = trainable_model("never", variant), trainable_model("always", variant)
    running.load_state_dict(skipping.state_dict())
    batch = build_batch(skipping, name)
    loss_skipping, grads_skipping, ran_skipping = gradients(skipping, batch)
    loss_running, grads_running, ran_running = gradients(running, batch)
    all_modules = {*skipping.model.encoder_modules(), "connector"}
    assert ran_running == all_modules
    assert ran_skipping != all_modules  # without the rule, this batch leaves something out

    # the same loss, bit for bit: the dummy outputs enter multiplied by 0
    assert torch.equal(loss_skipping, loss_running)
    # every trainable parameter now takes part (DDP without find_unused_parameters needs exactly this) ...
    missing = sorted(n for n, g in grads_running.items() if g is None)
    assert missing == [], missing
    # ... and those the batch did not use get exactly zero gradients; the others are unchanged
    unused = sorted(n for n, g in grads_skipping.items() if g is None)
    for n, g in grads_running.items():
        if n in unused:
            assert torch.count_nonzero(g) == 0, n
        else:
            torch.testing.assert_close(g, grads_skipping[n], rtol=0, atol=0)  # exact: same kernels, same inputs, + 0
    expected_unused = {
        "video_only": ("speech_projection", "audio_projection"),
        "audio_only": (),
        "text_only": ("connector.",),
    }[name]
    for prefix in expected_unused:
        if prefix == "audio_projection" and variant == "favor":
            continue
        assert any(prefix in n for n in unused), (prefix, unused)


def test_rule_is_off_at_inference_and_by_default_outside_distributed_jobs():
    model = trainable_model("distributed")
    batch = build_batch(model, "video_only")
    calls = []
    hook = model.model.speech_encoder.register_forward_hook(lambda *args: calls.append(1))
    model(**batch)  # training, but not a distributed job: nothing extra runs
    model.config.run_absent_encoders = "always"
    model.eval()
    with torch.no_grad():
        model(**batch)  # inference: never
    model.train()
    model(**batch)
    hook.remove()
    assert calls == [1]


def test_samples_without_frames_skip_the_vision_encoder():
    model = trainable_model("never").eval()
    samples = [sample_media(0, 1.0, seed=5), sample_media(0, 2.0, seed=6)]
    batch, _ = collate(model, samples, [([1], [2]), ([1], [2])])
    reference = dict(batch)
    # an all-padding frame tensor (no real frame in the batch) is the same as no frames
    batch["pixel_values_videos"] = torch.randn(2, 3, 3, IMAGE, IMAGE)
    batch["video_frame_mask"] = torch.zeros(2, 3, dtype=torch.bool)
    with torch.no_grad():
        # exact: the all-padding frames never reach a kernel, everything else is the same computation
        torch.testing.assert_close(model(**batch).logits, model(**reference).logits, rtol=0, atol=0)


def test_invalid_setting_is_refused():
    # the Literal type is enforced by the strict config dataclass, naming the field and the accepted values
    with pytest.raises(StrictDataclassFieldValidationError, match="run_absent_encoders.*distributed"):
        tiny_favor_config(run_absent_encoders="sometimes")
    with pytest.raises(ValueError, match="audio_chunk_seconds"):
        tiny_favor_config(audio_chunk_seconds=10.0)
