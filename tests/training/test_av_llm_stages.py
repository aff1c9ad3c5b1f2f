"""Training the Audio-Visual LLM: modality-augmented training (Shu et al. §3.2) teaches every encoder path, and the
paper's two stages are recipes of `transformers-av train`.

The learning test trains a tiny random-weight AV-LLM (CLIP + CLAP frozen; projectors and LLM train) on
`make_modality_match_task` rows: clips whose colour and tone pitch name the same class (4 classes, chance 1/4), each
row of ONE modality asking a question of that modality ("Which colour is on screen?" for a visual-only row, "Which
colour does the tone name?" for an audio-only row, "Which colour is this clip?" for an audio-visual one), mixed in
the batches as the paper's MAT mixes visual-only, audio-only and audio-visual samples. No row asks about a medium
it is not given. Held-out clips are then asked in each of the three modalities. The <AUD> view has no visual tokens
at all, so its accuracy can only come from the CLAP -> audio projector path; the <VIS> view likewise from CLIP ->
temporal/spatial projectors.

Measured (96 train rows, 32 per modality / 32 held-out clips x 3 modalities, batches of 24, AdamW 3e-3 betas
(0.9, 0.98), 100 steps; init seeds 0 / 1): held-out accuracy [<VIS>, <AUD>, <AUD_VIS>] [1.0, 1.0, 1.0] for both, LM
loss from 6.3 to 0.011. Threshold 0.8 per view.
"""

import math

import numpy as np

import pytest
import torch

from transformers_av import AvLlmForConditionalGeneration
from transformers_av.presets.tiny import tiny_av_llm_config
from transformers_av.presets.tiny import tiny_av_llm_processor
from transformers_av.synthetic.tasks import MATCH_QUESTIONS_BY_MODALITY, make_modality_match_task
from transformers_av.training import MATCH_TONES, AvLlmDataCollator, load_av_dataset, make_match_task
from transformers_av.training import TrainSettings, load_train_settings, run_training

STEPS = 100
VIEWS = {"visual": "<VIS>", "audio": "<AUD>", "audio_visual": "<AUD_VIS>"}


def test_modality_augmented_training_teaches_every_encoder_path(tmp_path):
    config = tiny_av_llm_config()
    processor = tiny_av_llm_processor(config)
    collator = AvLlmDataCollator(processor)
    make_modality_match_task(tmp_path / "train", 96, seed=100)
    make_match_task(tmp_path / "test", 32, seed=1000)
    train_rows = list(load_av_dataset(str(tmp_path / "train" / "data.jsonl")))
    assert [row["modality"] for row in train_rows[:3]] == ["visual", "audio", "audio_visual"]
    train = collator(train_rows)
    # the held-out clips asked in each modality, with that modality's question: sample 3i + v is clip i in view v
    clips = list(load_av_dataset(str(tmp_path / "test" / "data.jsonl")))
    test = collator([{**clip, "modality": modality, "prompt": MATCH_QUESTIONS_BY_MODALITY[modality]}
                     for clip in clips for modality in VIEWS])

    # one row is one sample, marked with its own modality token, with only that modality's media
    assert train["input_ids"].shape[0] == 96
    view_ids = [processor.tokenizer.convert_tokens_to_ids(token) for token in VIEWS.values()]
    for v, token_id in enumerate(view_ids):
        assert bool((train["input_ids"][v::3] == token_id).any(-1).all())
    assert not bool(train["audio_segment_mask"][0::3].any()) and bool(train["audio_segment_mask"][1::3].all())
    assert bool(train["video_frame_mask"][0::3].any(-1).all()) and not bool(train["video_frame_mask"][1::3].any())

    names = list(MATCH_TONES)
    first_tokens = [processor.tokenizer(c, add_special_tokens=False).input_ids[0] for c in names]
    assert len(set(first_tokens)) == len(names)
    answer_at = (test["labels"] != -100).float().argmax(-1)
    rows = torch.arange(len(answer_at))
    truth = torch.tensor([first_tokens.index(int(t)) for t in test["labels"][rows, answer_at]])

    torch.manual_seed(0)
    model = AvLlmForConditionalGeneration(config)
    model.freeze_encoders()

    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=3e-3, betas=(0.9, 0.98))
    generator = torch.Generator().manual_seed(0)
    model.train()
    losses = []
    for _ in range(STEPS):
        index = torch.randint(train["input_ids"].shape[0], (24,), generator=generator)
        loss = model(**{k: v[index] for k, v in train.items()}).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())

    correct = (predictions(model, test, answer_at, first_tokens) == truth).float()
    accuracy = [correct[v::3].mean().item() for v in range(3)]
    assert losses[-1] < losses[0] / 4, (losses[0], losses[-1])
    assert min(accuracy) >= 0.8, dict(zip(VIEWS.values(), accuracy))  # chance: 0.25

    # the <AUD> view answers from the sound: give each <AUD> sample another clip's audio and its accuracy collapses
    shuffled = dict(test)
    audio_rows = torch.arange(1, len(rows), 3)
    features = test["audio_input_features"].clone()
    features[audio_rows] = test["audio_input_features"][audio_rows.roll(1)]
    shuffled["audio_input_features"] = features
    moved_truth = truth[audio_rows.roll(1)]
    follows_the_audio = predictions(model, shuffled, answer_at, first_tokens)[audio_rows] == moved_truth
    assert follows_the_audio.float().mean().item() >= 0.8


def predictions(model, batch, answer_at, first_tokens) -> torch.Tensor:
    """The class each sample's answer starts with (argmax over the classes' first tokens), in eval mode."""
    model.eval()
    with torch.no_grad():
        logits = model(**batch).logits
    return logits[torch.arange(len(answer_at)), answer_at - 1][:, first_tokens].argmax(-1)


# -- the two stages as options of the training CLI -----------------------------------------------------------------------


def test_stage_recipes_fill_what_is_not_given(tmp_path):
    base = {"model": "tiny-av-llm", "train_data": "synthetic:match", "output_dir": str(tmp_path)}
    stage1 = load_train_settings(overrides={**base, "stage": 1})
    # Shu et al. §4.1: projectors only, lr 2e-3, total batch size 256, 3 epochs; AdamW (0.9, 0.98), cosine, 3% warm-up
    assert stage1.recipe == "av-llm-stage-1"
    assert (stage1.learning_rate, stage1.train_llm, stage1.lora) == (2e-3, False, False)
    assert (stage1.total_train_batch_size, stage1.num_train_epochs, stage1.max_steps) == (256, 3.0, -1)
    assert (stage1.lr_scheduler_type, stage1.warmup_steps, stage1.adam_beta1, stage1.adam_beta2) == (
        "cosine", 0.03, 0.9, 0.98)
    # ... as gradient accumulation on 8 processes of 4 samples: 256 = 4 x 8 x 8
    assert load_train_settings(overrides={**base, "stage": 1, "per_device_train_batch_size": 4}).batch_layout(8) == (8, 256)
    stage2 = load_train_settings(overrides={**base, "recipe": "av-llm-stage-2", "lora": True})
    assert (stage2.learning_rate, stage2.train_llm, stage2.lora) == (2e-5, True, True)
    assert (stage2.total_train_batch_size, stage2.num_train_epochs) == (128, 1.0)
    assert stage2.batch_layout(1) == (128, 128)
    # what the user sets wins over the recipe
    custom = load_train_settings(overrides={**base, "stage": 1, "learning_rate": 1e-3, "adam_beta2": 0.95,
                                            "total_train_batch_size": 64, "num_train_epochs": 1})
    assert (custom.learning_rate, custom.adam_beta2, custom.lr_scheduler_type) == (1e-3, 0.95, "cosine")
    assert (custom.total_train_batch_size, custom.num_train_epochs) == (64, 1.0)
    # the same through the Python API
    direct = TrainSettings(model="tiny-av-llm", train_data="synthetic:match", stage=1, learning_rate=1e-3)
    assert (direct.learning_rate, direct.train_llm, direct.adam_beta2, direct.warmup_steps) == (1e-3, False, 0.98, 0.03)
    # without a recipe nothing changes
    plain = load_train_settings(overrides=base)
    assert (plain.learning_rate, plain.adam_beta2, plain.lr_scheduler_type, plain.train_llm) == (1e-4, 0.999, "linear", True)
    assert (plain.total_train_batch_size, plain.num_train_epochs, plain.batch_layout(2)) == (None, 1.0, (1, 2))
    with pytest.raises(ValueError, match="stage must be 1 or 2"):
        load_train_settings(overrides={**base, "stage": 3})
    with pytest.raises(ValueError, match="train_llm: false"):
        load_train_settings(overrides={**base, "stage": 1, "lora": True})
    with pytest.raises(ValueError, match="stage: 1 is recipe 'av-llm-stage-1', but recipe is 'av-llm-stage-2'"):
        load_train_settings(overrides={**base, "stage": 1, "recipe": "av-llm-stage-2"})
    with pytest.raises(ValueError, match="unknown recipe 'av-llm-stage-3'.*did you mean"):
        load_train_settings(overrides={**base, "recipe": "av-llm-stage-3"})
    with pytest.raises(ValueError, match=r"total_train_batch_size 256 is not a multiple of per_device_train_batch_size "
                                         r"3 x 2 process\(es\) = 6"):
        load_train_settings(overrides={**base, "stage": 1, "per_device_train_batch_size": 3}).batch_layout(2)
    with pytest.raises(ValueError, match="but gradient_accumulation_steps is 4; give one of the two"):
        load_train_settings(overrides={**base, "stage": 1, "gradient_accumulation_steps": 4}).batch_layout(1)
    # the release that tagged every row three times is refused with what to do instead
    with pytest.raises(ValueError, match="'modality_augmentation' was removed: .*'modality' field"):
        load_train_settings(overrides={**base, "modality_augmentation": True})
    with pytest.raises(ValueError, match="'mixed_unpaired_ratio' was removed: .*video_audio_ratio"):
        load_train_settings(overrides={**base, "mixed_unpaired_ratio": 0.5})


def test_train_help_lists_the_stage_option(capsys):
    from transformers_av.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--help"])
    assert exit_info.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "--stage" in text and "3% warm-up" in text and "[1e-4; stage 1: 2e-3, stage 2: 2e-5]" in text
    assert "--recipe" in text and "--total_train_batch_size" in text and "favor-storytelling" in text
    for command in ([], ["evaluate"], ["convert"], ["demo"], ["presets"], ["make-storytelling"]):  # every help page
        with pytest.raises(SystemExit) as exit_info:
            main([*command, "--help"])
        assert exit_info.value.code == 0, command


def test_stage_one_trains_only_the_projectors(tmp_path):
    from transformers import AutoModelForMultimodalLM, TrainerCallback

    seen = {}

    class Inspect(TrainerCallback):
        def on_train_begin(self, args, state, control, model=None, optimizer=None, **kwargs):
            seen["args"] = args
            seen["initial"] = {k: v.detach().clone() for k, v in model.state_dict().items()}
            seen["trainable"] = sorted(n for n, p in model.named_parameters() if p.requires_grad
                                       and not n.startswith("model.connector."))

        def on_step_begin(self, args, state, control, lr_scheduler=None, **kwargs):
            seen.setdefault("lrs", []).append(lr_scheduler.get_last_lr()[0])

    settings = load_train_settings(overrides={
        "model": "tiny-av-llm", "train_data": "synthetic:match-modalities", "synthetic_clips": 6, "stage": 1,
        "total_train_batch_size": 2,  # the recipe's 256 is 128 micro-batches of 2 a step: too long for a test
        "output_dir": str(tmp_path / "run"), "max_steps": 34,
        "per_device_train_batch_size": 2, "save_steps": 100, "logging_steps": 10, "disable_tqdm": True,
    })
    summary = run_training(settings, callbacks=[Inspect()])
    assert (summary["recipe"], summary["total_train_batch_size"], summary["gradient_accumulation_steps"]) == (
        "av-llm-stage-1", 2, 1)
    args = seen["args"]
    assert (args.learning_rate, args.adam_beta1, args.adam_beta2, str(args.lr_scheduler_type)) == (
        2e-3, 0.9, 0.98, "SchedulerType.COSINE")
    assert (args.num_train_epochs, args.gradient_accumulation_steps) == (3.0, 1)
    assert args.get_warmup_steps(34) == math.ceil(0.03 * 34) == 2
    # warm-up: 0 -> 1e-3 -> 2e-3 over 2 steps, then cosine decay
    assert seen["lrs"][:3] == pytest.approx([0.0, 1e-3, 2e-3])  # analytic schedule, float rounding only
    assert seen["lrs"][-1] < 2e-3 * 0.01  # end of the cosine decay (measured 4.8e-6)
    # the projectors, and of the LLM only the embedding rows of the tokens the model adds (training.token_rows)
    assert seen["trainable"] == ["model.language_model.embed_tokens.weight"]

    final = AutoModelForMultimodalLM.from_pretrained(tmp_path / "run" / "final")
    assert isinstance(final, AvLlmForConditionalGeneration)
    embeddings = "model.language_model.embed_tokens.weight"
    for name, after in final.state_dict().items():
        before = seen["initial"][name]
        if name.startswith("model.connector.") or name == embeddings:
            continue
        assert torch.equal(before, after), name  # CLIP, CLAP, the LLM and the head are untouched
    # the modality tokens' rows trained (every row of the data is <VIS>, <AUD> or <AUD_VIS>), no other row moved
    config = final.config
    changed_rows = (final.state_dict()[embeddings] != seen["initial"][embeddings]).any(-1).nonzero()[:, 0].tolist()
    assert changed_rows == sorted(config.modality_token_ids.values())
    changed = [n for n, v in final.state_dict().items() if n.startswith("model.connector.")
               and not torch.equal(v, seen["initial"][n])]
    assert {n.split(".")[2] for n in changed} == {"temporal_projection", "spatial_projection", "audio_projection"}


def test_lora_wraps_an_av_llm_like_a_favor_model():
    """apply_lora: LoRA on the LLM's q/k/v/o only, the projectors trainable as a saved copy, encoders frozen; merging
    gives back a plain AvLlmForConditionalGeneration that computes what the adapter model computes."""
    from transformers_av.training import apply_lora, trainable_parameter_summary

    torch.manual_seed(0)
    config = tiny_av_llm_config()
    model = apply_lora(AvLlmForConditionalGeneration(config), r=4, alpha=8, dropout=0.0)
    summary = trainable_parameter_summary(model)
    assert summary["visual encoder"]["trainable"] == summary["audio encoder"]["trainable"] == 0
    assert summary["LM head"]["trainable"] == 0
    # LoRA: 2 layers x 4 projections x (A: 4 x 64 + B: 64 x 4); the 4 added tokens' embedding rows (PEFT trainable
    # tokens: the placeholder, <VIS>, <AUD>, <AUD_VIS>)
    lora_and_rows = 2 * 4 * (4 * 64 + 64 * 4) + 4 * 64
    assert summary["LLM"]["trainable"] == lora_and_rows
    projectors = 2 * (32 * 64 + 64) + (512 * 64 + 64)
    assert summary["projectors"]["trainable"] == projectors and summary["projectors"]["total"] == 2 * projectors
    assert summary["total"]["trainable"] == projectors + lora_and_rows
    processor = tiny_av_llm_processor(config)
    batch = processor(text=["<AUD> q", "<VIS> q"], audio=[np.zeros(16000, np.float32), None],
                      images=[None, np.full((32, 32, 3), 200, np.uint8)], sampling_rate=16000, answers=["a", "b"])
    loss = model(**batch).loss
    loss.backward()
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.5)
    optimizer.step()
    assert any(bool(p.abs().sum() > 0) for n, p in model.named_parameters() if "lora_B" in n)  # the LoRA moved
    model.eval()
    initial_rows = model.get_base_model().get_input_embeddings().original_module.weight.detach().clone()
    with torch.no_grad():
        expected = model(**batch).logits
        merged = model.merge_and_unload()
        assert type(merged) is AvLlmForConditionalGeneration
        # the rows of the modality tokens the batch used moved and are merged; no other row
        moved = (merged.get_input_embeddings().weight != initial_rows).any(-1).nonzero()[:, 0].tolist()
        assert moved == [config.visual_modality_token_id, config.audio_modality_token_id]
        # W + B A folded into one weight vs the adapter's separate path: fp32 summation order (measured 1.8e-7)
        assert torch.allclose(merged(**batch).logits, expected, atol=1e-5)
