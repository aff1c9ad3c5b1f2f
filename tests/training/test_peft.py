"""Training recipes on tiny random weights: LLM-only LoRA + trainable connector, Trainer with gradient accumulation,
adapter save/load/merge, FavorTrainer loss-term logging, LLM-only gradient checkpointing, bf16 autocast."""

import json
import math
import re

import pytest
import torch
from peft import PeftModel
from peft.tuners.lora import LoraLayer
from safetensors import safe_open
from transformers import Trainer, TrainerCallback

from transformers_av import FavorForConditionalGeneration, window_plan
from transformers_av.models import count_parameters
from transformers_av.presets.tiny import tiny_favor_config
from transformers_av.training import (
    LLM_ATTENTION_LORA_TARGET_REGEX,
    LLM_ATTENTION_MLP_LORA_TARGET_REGEX,
    FavorTrainer,
    apply_lora,
    enable_llm_gradient_checkpointing,
    favor_training_arguments,
    trainable_parameter_summary,
)

IMAGE = 28  # tiny ViT input: 2 x 2 patches
MEL_CHUNK = 3000
ENCODERS = ("visual_encoder", "speech_encoder", "audio_encoder")
ATTENTION = ("q_proj", "k_proj", "v_proj", "o_proj")
MLP = ("gate_proj", "up_proj", "down_proj")


def make_model(seed=0, **overrides):
    """Tiny video-SALMONN, dropout off everywhere (determinism for the equivalence tests).

    The frozen vision Q-Former (InstructBLIP, dropout 0.1) currently runs its dropout whenever the model is in train
    mode (see test_frozen_encoders_run_without_dropout_in_train_mode), so its dropout is switched off here too."""
    torch.manual_seed(seed)
    overrides.setdefault("connector_dropout", 0.0)
    config = tiny_favor_config("video_salmonn", image_size=IMAGE, **overrides)
    config.qformer_config.hidden_dropout_prob = config.qformer_config.attention_probs_dropout_prob = 0.0
    return FavorForConditionalGeneration(config)


def make_sample(num_frames, audio_seconds, seed, prompt=(1, 10, 11), suffix=(12, 13), answer=(40, 41, 2)):
    """One training sample: frames (T, 3, H, W), Whisper mel (80, 3000) with mask, BEATs fbank, and token ids."""
    g = torch.Generator().manual_seed(seed)
    return {
        "frames": torch.randn(num_frames, 3, IMAGE, IMAGE, generator=g),
        "mel": torch.randn(80, MEL_CHUNK, generator=g),
        "mel_mask": torch.arange(MEL_CHUNK) < int(audio_seconds * 100),
        "fbank": torch.randn(int(audio_seconds * 100) - 2, 128, generator=g),
        "prompt": list(prompt),
        "suffix": list(suffix),
        "answer": list(answer),
    }


class Collator:
    """Left-padded batch (as in test_modeling_favor.collate) with labels on the answer tokens only."""

    def __init__(self, config):
        self.config = config

    def __call__(self, samples):
        token = self.config.audio_visual_token_id
        ids, labels = [], []
        for s in samples:
            audio_frames = -(-int(s["mel_mask"].sum()) // 50)
            plan = window_plan(max(s["frames"].shape[0], audio_frames), self.config.resolutions)
            context = s["prompt"] + [token] * plan.num_tokens + s["suffix"]
            ids.append(torch.tensor(context + s["answer"]))
            labels.append(torch.tensor([-100] * len(context) + s["answer"]))
        n, length = len(samples), max(len(x) for x in ids)
        batch = {
            "input_ids": torch.zeros(n, length, dtype=torch.long),
            "attention_mask": torch.zeros(n, length, dtype=torch.long),
            "labels": torch.full((n, length), -100),
        }
        for i, (x, y) in enumerate(zip(ids, labels)):
            batch["input_ids"][i, length - len(x) :] = x
            batch["attention_mask"][i, length - len(x) :] = 1
            batch["labels"][i, length - len(y) :] = y
        frames = max(s["frames"].shape[0] for s in samples)
        batch["pixel_values_videos"] = torch.zeros(n, frames, 3, IMAGE, IMAGE)
        batch["video_frame_mask"] = torch.zeros(n, frames, dtype=torch.bool)
        fbank = max(s["fbank"].shape[0] for s in samples)
        batch["audio_input_features"] = torch.zeros(n, fbank, 128)
        batch["audio_input_features_mask"] = torch.zeros(n, fbank, dtype=torch.bool)
        for i, s in enumerate(samples):
            batch["pixel_values_videos"][i, : s["frames"].shape[0]] = s["frames"]
            batch["video_frame_mask"][i, : s["frames"].shape[0]] = True
            batch["audio_input_features"][i, : s["fbank"].shape[0]] = s["fbank"]
            batch["audio_input_features_mask"][i, : s["fbank"].shape[0]] = True
        batch["input_features"] = torch.stack([s["mel"] for s in samples])
        batch["input_features_mask"] = torch.stack([s["mel_mask"] for s in samples])
        return batch


# four samples of different media lengths and, above all, different answer lengths (num_items_in_batch matters)
SAMPLES = [
    make_sample(4, 2.0, 0, answer=(40, 2)),
    make_sample(7, 3.0, 1, prompt=(1, 20), answer=(50, 51, 52, 53, 54, 2)),
    make_sample(3, 1.5, 2, suffix=(14,), answer=(60, 61, 62, 63, 64, 65, 66, 67, 68, 69, 70, 2)),
    make_sample(11, 2.5, 3, answer=(80, 81, 82, 2)),
]


def lora_model(seed=0, **kwargs):
    model = make_model(seed, **kwargs.pop("config", {}))
    return apply_lora(model, dropout=0.0, **kwargs)


def training_args(tmp_path, **kwargs):
    defaults = dict(
        output_dir=str(tmp_path), report_to="none", save_strategy="no", use_cpu=True, logging_steps=1,
        max_grad_norm=0.0, learning_rate=1e-3, lr_scheduler_type="constant", warmup_steps=0, seed=0,
        dataloader_num_workers=0, disable_tqdm=True,
    )
    return favor_training_arguments(**{**defaults, **kwargs})


class GradientCapture(TrainerCallback):
    """The accumulated gradients of the trainable parameters, right before each optimizer step."""

    def __init__(self):
        self.steps = []

    def on_pre_optimizer_step(self, args, state, control, model=None, **kwargs):
        self.steps.append({n: p.grad.detach().clone() for n, p in model.named_parameters() if p.requires_grad})


def lora_module_names(model):
    return sorted(name for name, module in model.named_modules() if isinstance(module, LoraLayer))


# -- apply_lora --------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("target, projections", [("attention", ATTENTION), ("attention+mlp", ATTENTION + MLP)])
def test_apply_lora_trains_llm_lora_and_connector_only(target, projections):
    model = make_model()
    connector_names = [n for n, _ in model.model.connector.named_parameters()]
    layers = model.config.text_config.num_hidden_layers
    peft_model = apply_lora(model, target=target, dropout=0.0)
    assert isinstance(peft_model, PeftModel)

    def lora_target(i, proj):
        return f"model.language_model.layers.{i}.{'self_attn' if proj in ATTENTION else 'mlp'}.{proj}"

    expected = {
        f"base_model.model.{lora_target(i, proj)}.lora_{ab}.default.weight"
        for i in range(layers) for proj in projections for ab in "AB"
    }
    expected |= {f"base_model.model.model.connector.modules_to_save.default.{n}" for n in connector_names}
    trainable = {n for n, p in peft_model.named_parameters() if p.requires_grad}
    assert trainable == expected

    # LoRA sits on the LLM's projections only: Whisper has the same leaf names (self_attn.q_proj) and gets none
    assert lora_module_names(peft_model) == sorted(
        f"base_model.model.{lora_target(i, proj)}" for i in range(layers) for proj in projections
    )
    whisper_q = peft_model.base_model.model.model.speech_encoder.layers[0].self_attn.q_proj
    assert type(whisper_q) is torch.nn.Linear
    regex = LLM_ATTENTION_LORA_TARGET_REGEX if target == "attention" else LLM_ATTENTION_MLP_LORA_TARGET_REGEX
    for name, _ in peft_model.base_model.model.named_modules():
        if name.split(".")[1:2] != ["language_model"]:
            assert re.fullmatch(regex, name) is None, name
    assert re.fullmatch(regex, "model.speech_encoder.layers.0.self_attn.q_proj") is None
    assert re.fullmatch(regex, "model.connector.qformer.layers.0.self_attention.query") is None

    summary = trainable_parameter_summary(peft_model)  # the family's part names, as count_parameters gives them
    assert list(summary) == ["visual encoder", "speech encoder", "audio-event encoder", "connector", "LLM", "LM head",
                             "total"]
    for part in ("visual encoder", "speech encoder", "audio-event encoder", "LM head"):
        assert summary[part]["trainable"] == 0 and summary[part]["total"] > 0, part
    assert summary["connector"]["trainable"] == sum(p.numel() for p in model.model.connector.parameters()) // 2
    lora_count = sum(p.numel() for n, p in peft_model.named_parameters() if ".lora_" in n)
    assert summary["LLM"]["trainable"] == lora_count
    assert summary["total"]["trainable"] == sum(p.numel() for n, p in peft_model.named_parameters() if p.requires_grad)
    assert summary["total"]["total"] == sum(p.numel() for p in peft_model.parameters())
    assert {part: counts["total"] for part, counts in summary.items()} == count_parameters(peft_model)

    if target != "attention":
        return
    # a backward pass reaches LoRA and the connector copy, never the encoders or the frozen base weights
    peft_model.train()
    batch = Collator(model.config)(SAMPLES[:2])
    peft_model(**batch).loss.backward()
    for part, module in model.model.encoder_modules().items():
        assert all(p.grad is None for p in module.parameters()), part
    assert model.model.visual_encoder.query_tokens.grad is None
    frozen = [n for n, p in peft_model.named_parameters() if not p.requires_grad and p.grad is not None]
    assert frozen == []
    assert all(peft_model.get_parameter(n).grad is not None for n in expected)
    assert all(peft_model.get_parameter(n).grad.abs().sum() > 0 for n in expected if ".lora_B." in n)


def test_apply_lora_without_connector():
    peft_model = apply_lora(make_model(), train_connector=False)
    trainable = [n for n, p in peft_model.named_parameters() if p.requires_grad]
    assert trainable and all(".lora_" in n and ".language_model.layers." in n for n in trainable)
    assert trainable_parameter_summary(peft_model)["connector"]["trainable"] == 0
    with pytest.raises(TypeError, match="FavorForConditionalGeneration"):
        apply_lora(make_model().model)
    with pytest.raises(ValueError, match="target"):
        apply_lora(make_model(), target="mlp")


def test_frozen_encoders_run_without_dropout_in_train_mode():
    torch.manual_seed(0)
    peft_model = apply_lora(FavorForConditionalGeneration(tiny_favor_config("video_salmonn", image_size=IMAGE)))
    peft_model.train()
    media = {k: v for k, v in Collator(peft_model.config)(SAMPLES[:1]).items() if k.startswith("pixel") or "frame" in k}
    base = peft_model.get_base_model().model
    with torch.no_grad():
        first = base.get_visual_tokens(**media)
        second = base.get_visual_tokens(**media)
    assert torch.equal(first, second)


# -- Trainer: gradient accumulation ------------------------------------------------------------------------------------
def run_one_step(tmp_path, trainer_class, batch_size, accumulation):
    # The diversity loss is a per-batch mean over windows, added unscaled to every micro-batch's loss, so only the
    # LM loss is exactly equivalent under gradient accumulation: weight 0 here (the weighted case is checked below).
    model = lora_model(config={"diversity_loss_weight": 0.0})
    capture = GradientCapture()
    args = training_args(
        tmp_path, per_device_train_batch_size=batch_size, gradient_accumulation_steps=accumulation, max_steps=1
    )
    trainer = trainer_class(
        model=model, args=args, train_dataset=SAMPLES, data_collator=Collator(model.config), callbacks=[capture]
    )
    trainer.train()
    (gradients,) = capture.steps
    return trainer.state.log_history[0], gradients


def test_gradient_accumulation_equals_full_batch(tmp_path):
    # an unmodified transformers.Trainer on the padded batch of 4, FavorTrainer on 4 micro-batches of 1
    full_log, full_grads = run_one_step(tmp_path, Trainer, 4, 1)
    accum_log, accum_grads = run_one_step(tmp_path, FavorTrainer, 1, 4)
    # same process, same weights: one padded batch of 4 vs 4 micro-batches summed, i.e. other batch shapes and another
    # summation order of the fp32 token losses / gradients. Loss O(6): 1e-5 ~ 20 ulps (measured 4.8e-7); gradients
    # O(0.3) at most, allclose's atol 1e-5 + rtol 1e-5 (measured <= 7.5e-8)
    assert abs(full_log["loss"] - accum_log["loss"]) < 1e-5
    assert abs(accum_log["lm_loss"] - accum_log["loss"]) < 1e-6  # weight 0: the LM loss is the loss (measured 0)
    assert full_grads.keys() == accum_grads.keys() and len(full_grads) > 0
    for name in full_grads:
        assert torch.allclose(full_grads[name], accum_grads[name], atol=1e-5), name
    # num_items_in_batch does matter here: the mean of the per-sample mean losses (what accumulation without it
    # would report) is another number, 0.025 away (measured) at these near-uniform random-init losses: far above 1e-3
    model = lora_model(config={"diversity_loss_weight": 0.0})
    with torch.no_grad():
        per_sample = [model(**Collator(model.config)([s])).loss.item() for s in SAMPLES]
    assert abs(sum(per_sample) / 4 - full_log["loss"]) > 1e-3


@torch.no_grad()
def test_gradient_accumulation_applies_the_diversity_weight_once():
    # One optimizer step over 4 micro-batches sums their losses (Trainer passes the step's num_items_in_batch to
    # each). The LM terms add up to the full batch's LM loss; each diversity term is scaled by its micro-batch's
    # share of the answer tokens, so the step carries w x (token-weighted mean of the micro-batch diversities) --
    # not 4 x w x diversity, which an unscaled term would give. (Weight 1 keeps the terms far above float noise.)
    weight = 1.0
    model = lora_model(config={"diversity_loss_weight": weight}).eval()
    collator = Collator(model.config)
    batches = [collator([s]) for s in SAMPLES]
    counts = [int(b["labels"][..., 1:].ne(-100).sum()) for b in batches]
    num_items = sum(counts)
    full = model(**collator(SAMPLES), num_items_in_batch=num_items)
    micro = [model(**b, num_items_in_batch=num_items) for b in batches]
    # same process: the sum of 4 micro-batch losses vs the batch of 4, fp32 sums of O(6) losses in another order
    # (measured 6e-8). The diversity part is read back as loss - lm_loss of fp32 losses <= 6.4: each carries at most
    # half an ulp of 6 (2.4e-7) from rounding loss = lm_loss + w * diversity, <= 9.5e-7 for 4 of them (measured 3e-8)
    assert abs(sum(out.lm_loss.item() for out in micro) - full.lm_loss.item()) < 1e-5
    diversity_part = sum(out.loss.item() - out.lm_loss.item() for out in micro)
    weighted_mean = sum(c / num_items * out.diversity_loss.item() for c, out in zip(counts, micro))
    assert abs(diversity_part - weight * weighted_mean) < 1e-6
    # the full batch applies the weight once too, to its own (window-averaged) diversity: same scale, not 4x
    assert abs(full.loss.item() - full.lm_loss.item() - weight * full.diversity_loss.item()) < 1e-6
    assert 0.5 < diversity_part / (weight * full.diversity_loss.item()) < 2.0


# -- adapter save / load / merge ---------------------------------------------------------------------------------------
def test_adapter_round_trip_is_bit_exact_and_merge_keeps_logits(tmp_path):
    peft_model = lora_model().eval()
    batch = Collator(peft_model.config)(SAMPLES[:2])
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():  # stands in for training: LoRA B away from zero, the connector copy away from the base
        for p in peft_model.parameters():
            if p.requires_grad:
                p.add_(0.05 * torch.randn(p.shape, generator=generator))
    trained = {n: p.detach().clone() for n, p in peft_model.named_parameters() if p.requires_grad}
    assert any(".lora_B." in n and p.abs().sum() > 0 for n, p in trained.items())
    with torch.no_grad():
        reference = peft_model(**batch).logits

    peft_model.save_pretrained(tmp_path)
    adapter_config = json.loads((tmp_path / "adapter_config.json").read_text())
    assert adapter_config["target_modules"] == LLM_ATTENTION_LORA_TARGET_REGEX
    assert adapter_config["modules_to_save"] == ["connector"]
    with safe_open(tmp_path / "adapter_model.safetensors", "pt") as f:
        keys = list(f.keys())
    assert all(".language_model.layers." in k or ".connector." in k for k in keys)
    assert not any(part in k for k in keys for part in ENCODERS)

    loaded = PeftModel.from_pretrained(make_model(), tmp_path).eval()
    loaded_params = dict(loaded.named_parameters())
    for name, value in trained.items():
        assert torch.equal(loaded_params[name], value), name
    with torch.no_grad():
        assert torch.equal(loaded(**batch).logits, reference)

    merged = loaded.merge_and_unload()
    assert type(merged) is FavorForConditionalGeneration
    assert lora_module_names(merged) == []
    with torch.no_grad():
        # W + B A folded into one weight vs the adapter's separate path: fp32 summation order on O(1) logits
        # (measured 2.5e-7)
        assert torch.allclose(merged(**batch).logits, reference, atol=1e-5)


# -- FavorTrainer ------------------------------------------------------------------------------------------------------
def test_favor_trainer_logs_loss_terms_and_learns(tmp_path):
    model = make_model()
    # The tiny config's LM head (std 0.02, frozen under LoRA) bounds the logits to about +-1.3, so no adapter can
    # bring the loss far below log(513) = 6.24 (measured: 6.24 -> 5.89 in 20 steps). A head of realistic scale lets
    # the loss show what LoRA + connector learn: measured per step 7.9 -> 3.6 in 20 Adam steps at lr 1e-3.
    torch.nn.init.normal_(model.lm_head.weight, std=0.25)
    model = apply_lora(model, dropout=0.0)
    args = training_args(tmp_path, per_device_train_batch_size=2, max_steps=20, learning_rate=1e-3, logging_steps=4)
    trainer = FavorTrainer(
        model=model, args=args, train_dataset=[SAMPLES[0], SAMPLES[2]], data_collator=Collator(model.config)
    )
    trainer.train()
    logs = [entry for entry in trainer.state.log_history if "loss" in entry]
    assert [entry["step"] for entry in logs] == [4, 8, 12, 16, 20]
    weight = model.config.diversity_loss_weight
    for entry in logs:
        assert {"lm_loss", "diversity_loss"} <= entry.keys()
        # averaged over the same 4 steps as `loss`: the same sums in another order, relative 1e-5 (measured 3.6e-8)
        assert abs(entry["loss"] - (entry["lm_loss"] + weight * entry["diversity_loss"])) < 1e-5 * entry["loss"]
    # mean of steps 1-4 vs mean of steps 17-20: measured 0.59
    assert logs[-1]["loss"] < 0.7 * logs[0]["loss"]


# -- gradient checkpointing on the LLM only ----------------------------------------------------------------------------
def test_llm_gradient_checkpointing_same_loss_and_gradients():
    batch = Collator(tiny_favor_config("video_salmonn", image_size=IMAGE))(SAMPLES[:2])

    def step(checkpointing):
        peft_model = lora_model()
        calls = []
        if checkpointing:
            language_model = enable_llm_gradient_checkpointing(peft_model)
            for name, module in language_model.named_modules():
                if getattr(module, "gradient_checkpointing", False) and hasattr(module, "_gradient_checkpointing_func"):
                    inner = module._gradient_checkpointing_func

                    def counted(*args, _inner=inner, _name=name, **kwargs):
                        calls.append(_name)
                        return _inner(*args, **kwargs)

                    module._gradient_checkpointing_func = counted
            favor = peft_model.base_model.model.model
            for part in ("visual_encoder", "speech_encoder", "audio_encoder", "connector"):
                modules = getattr(favor, part).named_modules()
                assert [n for n, m in modules if getattr(m, "gradient_checkpointing", False)] == [], part
        peft_model.train()
        loss = peft_model(**batch).loss
        loss.backward()
        grads = {n: p.grad.clone() for n, p in peft_model.named_parameters() if p.requires_grad}
        return loss.detach(), grads, calls

    loss_off, grads_off, _ = step(False)
    loss_on, grads_on, calls = step(True)
    assert calls == ["layers.0", "layers.1"]  # every LLM decoder layer went through the checkpoint, nothing else
    # recomputation in the backward pass runs the very same kernels on the same inputs (measured 0); 1e-5 absorbs a
    # recomputation that is not bit-identical
    assert torch.allclose(loss_on, loss_off, atol=1e-5)
    for name in grads_off:
        assert torch.allclose(grads_on[name], grads_off[name], atol=1e-5), name


def test_training_arguments_helper():
    args = favor_training_arguments(output_dir="unused", report_to="none", use_cpu=True)
    assert args.remove_unused_columns is False
    with pytest.raises(ValueError, match="remove_unused_columns"):
        favor_training_arguments(output_dir="unused", remove_unused_columns=True)
    with pytest.raises(ValueError, match="enable_llm_gradient_checkpointing"):
        favor_training_arguments(output_dir="unused", gradient_checkpointing=True)


# -- mixed precision ---------------------------------------------------------------------------------------------------
def test_bf16_autocast_training_step(tmp_path):
    peft_model = lora_model()
    peft_model.train()
    batch = Collator(peft_model.config)(SAMPLES[:2])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = peft_model(**batch)
    assert out.logits.dtype == torch.bfloat16
    assert torch.isfinite(out.loss) and out.loss.item() > 0
    out.loss.backward()
    grads = [p.grad for p in peft_model.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)

    # the same through the Trainer (accelerate's CPU bf16 autocast), fp32 master weights
    args = training_args(tmp_path, per_device_train_batch_size=2, max_steps=2, bf16=True)
    collator = Collator(peft_model.config)
    trainer = FavorTrainer(model=lora_model(), args=args, train_dataset=SAMPLES[:2], data_collator=collator)
    trainer.train()
    assert trainer.accelerator.mixed_precision == "bf16"
    logs = [entry for entry in trainer.state.log_history if "loss" in entry]
    assert len(logs) == 2
    assert all(math.isfinite(entry[key]) for entry in logs for key in ("loss", "lm_loss", "diversity_loss"))
    assert {p.dtype for p in trainer.model.parameters()} == {torch.float32}
