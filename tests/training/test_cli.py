"""`transformers-av train`: settings from YAML + command line, every modality in every batch (so every rank runs every
encoder), data errors naming the row, a 2-process gloo DDP run under `accelerate launch` whose ranks end with identical
weights, and resuming from `checkpoint-N` on the loss curve of an uninterrupted run."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time

import pytest
import torch
from transformers import AutoModelForMultimodalLM, AutoProcessor, TrainerCallback

from transformers_av import FavorForConditionalGeneration
from transformers_av.cli import build_parser
from transformers_av.presets.tiny import tiny_favor_config
from transformers_av.synthetic.media import make_frames, make_tone, write_video, write_wav
from transformers_av.presets.tiny import tiny_processor
from transformers_av.training import FavorDataCollator, load_train_settings, run_training, weights_digest
from transformers_av.training.run import RowNamingCollator, load_training_dataset, mixed_training_data
from transformers_av.training.settings import train_overrides
from transformers_av.synthetic.tasks import make_sync_task

IMAGE = 28  # tiny ViT input: 2 x 2 patches


def tiny_config():
    return tiny_favor_config("video_salmonn", image_size=IMAGE)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """A saved tiny model + processor, a silent video, a tone, and three 1-second clips of the synchronisation task."""
    root = tmp_path_factory.mktemp("train_cli")
    torch.manual_seed(0)
    config = tiny_config()
    FavorForConditionalGeneration(config).save_pretrained(root / "model")
    tiny_processor(config).save_pretrained(root / "model")
    write_video(root / "silent.mp4", make_frames(8, 32, 32, colors=["red", "blue"]), 8)  # 1 s, no sound track
    write_wav(root / "tone.wav", make_tone(440.0, 1.0), 16000)
    (root / "unimodal.jsonl").write_text(
        json.dumps({"video": "silent.mp4", "prompt": "What colour is shown?", "answer": "red then blue"}) + "\n"
        + json.dumps({"audio": "tone.wav", "prompt": "What is heard?", "answer": "a tone"}) + "\n"
    )
    make_sync_task(root / "sync", 3, seconds=1, fps=8, seed=0)
    return root


# -- settings ------------------------------------------------------------------------------------------------------------


def test_yaml_settings_with_command_line_overrides(tmp_path):
    config = tmp_path / "train.yaml"
    config.write_text(
        "model: tiny-video-salmonn\n"
        "model_config_overrides: {image_size: 28}\n"
        "train_data: data.jsonl\n"
        "learning_rate: 1e-3\n"  # YAML reads this as a string: still a float setting
        "lora: false\n"
        "lora_r: 8\n"
        "max_steps: 7\n"
    )
    args = build_parser().parse_args(
        ["train", "--config", str(config), "--learning-rate", "2e-4", "--lora", "--save_steps", "3",
         "--training-args", '{"optim": "adamw_torch"}']
    )
    overrides = {k: v for k, v in vars(args).items() if k not in ("config", "func", "command")}
    assert overrides == train_overrides(args)  # only the options given: the YAML's values stand for the others
    settings = load_train_settings(args.config, overrides)
    assert settings.learning_rate == 2e-4  # the command line wins
    assert settings.lora is True and settings.lora_r == 8 and settings.max_steps == 7 and settings.save_steps == 3
    assert settings.model_config_overrides == {"image_size": 28}
    assert settings.training_args == {"optim": "adamw_torch"}
    assert settings.ensure_all_modalities is True and settings.freeze_encoders is True  # defaults
    assert load_train_settings(config).learning_rate == 1e-3

    with pytest.raises(ValueError, match="unknown training setting 'learning_rat'; did you mean 'learning_rate'"):
        load_train_settings(config, {"learning_rat": 1.0})
    with pytest.raises(ValueError, match="'max_steps' must be int"):
        load_train_settings(config, {"max_steps": "ten"})
    with pytest.raises(ValueError, match="lora_target"):
        load_train_settings(config, {"lora_target": "q_proj"})
    with pytest.raises(ValueError, match="keeps the encoders frozen"):
        load_train_settings(config, {"lora": True, "freeze_encoders": False})
    with pytest.raises(ValueError, match="own field"):
        load_train_settings(config, {"training_args": {"seed": 1}})
    with pytest.raises(SystemExit):
        build_parser().parse_args(["train", "--lora", "maybe"])


def test_settings_from_json_negated_flags_and_json_text(tmp_path):
    """The options are HfArgumentParser's: `--no-<flag>` turns off a flag that is on; a dictionary setting is JSON text
    on the command line; a .json config is read like a YAML one; what is not given keeps the file's value."""
    config = tmp_path / "train.json"
    config.write_text(json.dumps({"model": "tiny-favor", "train_data": "d.jsonl", "lora_r": 4, "stage": 2}))
    args = build_parser().parse_args(
        ["train", "--config", str(config), "--no-ensure-all-modalities", "--lora",
         "--model-config-overrides", '{"image_size": 28}', "--lora-target", "attention+mlp"]
    )
    overrides = train_overrides(args)
    assert set(overrides) == {"ensure_all_modalities", "lora", "model_config_overrides", "lora_target"}
    settings = load_train_settings(args.config, overrides)
    assert settings.ensure_all_modalities is False and settings.lora is True and settings.lora_r == 4
    assert settings.model_config_overrides == {"image_size": 28} and settings.lora_target == "attention+mlp"
    assert settings.learning_rate == 2e-5  # the stage's value: nothing set it
    with pytest.raises(ValueError, match="'model_config_overrides' must be a JSON object"):
        load_train_settings(config, {"model_config_overrides": "{image_size: 28"})
    with pytest.raises(ValueError, match="'seed' cannot be null"):
        load_train_settings(config, {"seed": None})
    with pytest.raises(ValueError, match=rf"{config}: unknown training setting 'lorar'; did you mean 'lora_r'"):
        load_train_settings(config, {"lorar": 8})
    with pytest.raises(SystemExit):  # argparse checks the choices
        build_parser().parse_args(["train", "--lora-target", "mlp"])


def test_resume_latest_without_checkpoint_is_a_clear_error(workspace, tmp_path):
    settings = load_train_settings(overrides={
        "model": str(workspace / "model"), "train_data": str(workspace / "unimodal.jsonl"),
        "output_dir": str(tmp_path / "empty"), "resume_from_checkpoint": "latest", "max_steps": 1,
    })
    with pytest.raises(FileNotFoundError, match="holds no checkpoint-N folder"):
        run_training(settings)


# -- every modality in every batch -------------------------------------------------------------------------------------


def test_every_batch_runs_every_encoder_with_the_same_loss(workspace):
    """A video-only batch skips Whisper/BEATs (their projections get no gradient: a DDP rank holding it waits forever
    for the other rank's reduction); with `ensure_all_modalities` the dummy audio runs them multiplied by 0 -- all
    trainable parameters get a gradient and the loss and token layout are exactly those of the plain batch."""
    torch.manual_seed(0)
    config = tiny_config()
    config.connector_dropout = 0.0
    config.qformer_config.hidden_dropout_prob = config.qformer_config.attention_probs_dropout_prob = 0.0
    model = FavorForConditionalGeneration(config)
    model.freeze_encoders()
    model.train()
    processor = tiny_processor(config)
    dataset = load_training_dataset(str(workspace / "unimodal.jsonl"), None)
    projections = {f"model.connector.{name}.{p}" for name in ("speech_projection", "audio_projection") for p in ("weight", "bias")}

    def run(rows, ensure):
        batch = FavorDataCollator(processor, ensure_all_modalities=ensure)(rows)
        model.zero_grad(set_to_none=True)
        output = model(**batch)
        output.loss.backward()
        missing = {n for n, p in model.named_parameters() if p.requires_grad and p.grad is None}
        return batch, output.loss.item(), missing

    video_only, audio_only = [dataset[0]], [dataset[1]]
    plain, plain_loss, plain_missing = run(video_only, False)
    assert "input_features" not in plain and plain_missing == projections
    padded, padded_loss, padded_missing = run(video_only, True)
    assert padded_missing == set()
    # the padded modality's dummy output enters multiplied by 0: the same loss, exact in practice (measured 0);
    # 1e-6 ~ 2 ulps of a loss of 6
    assert padded_loss == pytest.approx(plain_loss, abs=1e-6)
    assert torch.equal(padded["input_ids"], plain["input_ids"])  # same number of audio-visual tokens
    assert padded["input_features"].shape == (1, 80, 3000) and not padded["input_features_mask"].any()
    assert padded["audio_input_features"].shape[-1] == 128 and padded["audio_input_features_mask"].all()
    assert padded["modality_mask"].tolist() == [[1.0, 0.0]]

    plain, plain_loss, plain_missing = run(audio_only, False)
    assert "pixel_values_videos" not in plain and plain_missing == set()
    padded, padded_loss, padded_missing = run(audio_only, True)
    assert padded_missing == set() and padded_loss == pytest.approx(plain_loss, abs=1e-6)
    assert torch.equal(padded["input_ids"], plain["input_ids"])
    # one zero frame, counted (the sample has audio frames, so the frame count is unchanged), masked by modality_mask
    assert padded["pixel_values_videos"].shape == (1, 1, 3, IMAGE, IMAGE) and padded["video_frame_mask"].tolist() == [[True]]
    assert padded["modality_mask"].tolist() == [[0.0, 1.0]]
    # a text-only batch is left alone (the model skips the encoders for it)
    text_only = FavorDataCollator(processor, ensure_all_modalities=True)([{"prompt": "Hi?", "answer": "Hello."}])
    assert "input_features" not in text_only and "pixel_values_videos" not in text_only


def test_a_batch_that_cannot_be_decoded_names_its_row(workspace, tmp_path):
    (tmp_path / "broken.mp4").write_bytes(b"not a video")
    data = tmp_path / "data.jsonl"
    data.write_text(
        json.dumps({"video": str(workspace / "silent.mp4"), "prompt": "Q?", "answer": "A."}) + "\n"
        + json.dumps({"video": "broken.mp4", "prompt": "Q?", "answer": "A."}) + "\n"
    )
    dataset = load_training_dataset(str(data), None)
    collator = RowNamingCollator(FavorDataCollator(tiny_processor(tiny_config())))
    assert collator([dataset[0]])["video_frame_mask"].sum().item() == 2  # 1 s at 2 fps
    with pytest.raises(ValueError, match=rf"Cannot build a batch from line 1 of {data}, line 2 of {data}: .*broken\.mp4"):
        collator([dataset[0], dataset[1]])


# -- distributed: two gloo ranks under accelerate launch ------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_accelerate_ddp_two_ranks_end_with_identical_weights(workspace, tmp_path):
    """`accelerate launch` with 2 CPU processes (torchrun + gloo). Each optimizer step gives one rank the video-only row
    and the other the audio-only row; `ddp_find_unused_parameters=false` makes DDP demand a gradient for every
    trainable parameter on every rank, which only holds because every batch runs every encoder (without
    `ensure_all_modalities` this run hangs in the first gradient reduction)."""
    output = tmp_path / "ddp"
    env = dict(os.environ, ACCELERATE_USE_CPU="true", CUDA_VISIBLE_DEVICES="", OMP_NUM_THREADS="1",
               TOKENIZERS_PARALLELISM="false", HF_HUB_OFFLINE="1")
    # `accelerate launch --cpu --num_processes 2` starts ONE process unless mpirun is configured; --multi_gpu is the
    # torchrun launcher, which falls back to gloo on CPU (ACCELERATE_USE_CPU keeps it on CPU on a GPU machine too)
    command = [
        sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
        "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", str(_free_port()),
        "-m", "transformers_av.cli", "train",
        "--model", str(workspace / "model"), "--train-data", str(workspace / "unimodal.jsonl"),
        "--output-dir", str(output), "--max-steps", "3", "--learning-rate", "1e-3", "--logging-steps", "1",
        "--save-steps", "100", "--per-device-train-batch-size", "1", "--ddp-find-unused-parameters", "false",
        "--weights-digest", "--disable-tqdm", "--seed", "0",
    ]
    start = time.perf_counter()
    try:
        result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=240)
    except subprocess.TimeoutExpired as error:
        pytest.fail(f"the 2-rank run hung (no result in 240 s):\n{(error.stderr or b'')[-3000:]}")
    elapsed = time.perf_counter() - start
    assert result.returncode == 0, result.stderr[-5000:]

    ranks = [json.loads((output / "weight_digests" / f"rank-{r}.json").read_text()) for r in (0, 1)]
    assert [r["world_size"] for r in ranks] == [2, 2] and [r["global_step"] for r in ranks] == [3, 3]
    assert ranks[0]["initial"] == ranks[1]["initial"]
    assert ranks[0]["final"] == ranks[1]["final"]  # bit-identical weights on both ranks
    assert ranks[0]["final"] != ranks[0]["initial"]  # and training changed them
    # the saved model is exactly the ranks' weights, and loads with its processor through the Auto classes
    final = AutoModelForMultimodalLM.from_pretrained(output / "final")
    assert weights_digest(final) == ranks[0]["final"]
    assert weights_digest(AutoModelForMultimodalLM.from_pretrained(workspace / "model")) == ranks[0]["initial"]
    assert type(AutoProcessor.from_pretrained(output / "final")).__name__ == "FavorProcessor"
    state = json.loads((output / "trainer_state.json").read_text())
    losses = [entry["loss"] for entry in state["log_history"] if "loss" in entry]
    assert len(losses) == 3 and all(0 < loss < 10 for loss in losses)
    print(f"2-rank DDP run: {elapsed:.1f} s, losses {losses}")


# -- resuming ----------------------------------------------------------------------------------------------------------


class StepRecorder(TrainerCallback):
    """Records the optimizer steps a run executes."""

    def __init__(self):
        self.steps: list[int] = []

    def on_step_end(self, args, state, control, **kwargs):
        self.steps.append(state.global_step)


class StopAtStep(TrainerCallback):
    """Interrupts training after `step` optimizer steps (what a killed job leaves behind: its checkpoints)."""

    def __init__(self, step: int):
        self.step = step

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step >= self.step:
            control.should_training_stop = True


def test_resume_from_checkpoint_continues_the_same_loss_curve(workspace, tmp_path):
    """4 steps uninterrupted vs. stopped after 2 (mid-epoch: 3 rows, batch 1) and resumed from checkpoint-2 ('latest'),
    crossing an epoch boundary.
    LoRA with dropout 0.1 and the connector's dropout are on: the checkpoint's RNG states, optimizer, scheduler and
    data position must all be restored for the curves to match. video-SALMONN's audio-video matching is on (half of
    the paired rows become matching questions, half of those with the audio row's tone): the resumed run must draw
    what the uninterrupted one drew."""
    data = tmp_path / "mixed.jsonl"
    sync_rows = (workspace / "sync" / "data.jsonl").read_text().splitlines()[:2]
    data.write_text("".join(json.dumps({**json.loads(row), "video": str(workspace / "sync" / json.loads(row)["video"])})
                            + "\n" for row in sync_rows)
                    + json.dumps({"audio": str(workspace / "tone.wav"), "prompt": "What is heard?", "answer": "a tone"})
                    + "\n")

    def settings(output, **extra):
        return load_train_settings(overrides={
            "model": str(workspace / "model"), "train_data": str(data), "av_matching_ratio": 0.5,
            "output_dir": str(output), "lora": True, "lora_r": 4, "lora_alpha": 8, "max_steps": 4,
            "per_device_train_batch_size": 1, "learning_rate": 1e-3, "logging_steps": 1, "save_steps": 2,
            "seed": 1, "disable_tqdm": True, **extra,
        })

    # the samples of epochs 0 and 1 (steps 1-3 and 4): with seed 1, row 1 is a mismatched matching question each time
    mixed = mixed_training_data(load_training_dataset(str(data), None), settings(tmp_path / "unused"))
    answers = [[mixed[key]["answer"] for key in sampler] for epoch in (0, 1)
               for sampler in [mixed.sampler()] if sampler.set_epoch(epoch) is None]
    assert answers == [["blue", "No.", "a tone"], ["a tone", "blue", "No."]], answers  # row 0 answers "blue"

    def curve(output):
        history = json.loads((output / "trainer_state.json").read_text())["log_history"]
        return {e["step"]: (e["loss"], e["lm_loss"], e["grad_norm"]) for e in history if "loss" in e}

    start = time.perf_counter()
    run_training(settings(tmp_path / "full"))
    interrupted = run_training(settings(tmp_path / "resumed"), callbacks=[StopAtStep(2)])
    assert interrupted["global_step"] == 2 and (tmp_path / "resumed" / "checkpoint-2").is_dir()
    recorder = StepRecorder()
    resumed = run_training(settings(tmp_path / "resumed", resume_from_checkpoint="latest"), callbacks=[recorder])
    elapsed = time.perf_counter() - start
    assert resumed["resumed_from"].endswith("checkpoint-2") and resumed["global_step"] == 4
    assert recorder.steps == [3, 4]  # it continued: only the two missing steps ran

    full, again = curve(tmp_path / "full"), curve(tmp_path / "resumed")
    assert sorted(full) == sorted(again) == [1, 2, 3, 4]
    worst = max(abs(x - y) for step in full for x, y in zip(full[step], again[step]))
    # same computation in the same order on the same machine: equal to float32 rounding (measured: 0.0)
    assert worst <= 1e-6, (full, again)
    assert full[4][0] != full[1][0]  # the curve moves (it is not a constant being compared)

    # the final models agree too; final/ is the LoRA-merged model, final/adapter the adapter alone
    a = AutoModelForMultimodalLM.from_pretrained(tmp_path / "full" / "final")
    b = AutoModelForMultimodalLM.from_pretrained(tmp_path / "resumed" / "final")
    base = AutoModelForMultimodalLM.from_pretrained(workspace / "model")
    for (name, pa), (_, pb) in zip(a.named_parameters(), b.named_parameters()):
        torch.testing.assert_close(pa, pb, atol=1e-6, rtol=0, msg=name)  # as above: same machine, same order (0)
    q_proj = "model.language_model.layers.0.self_attn.q_proj.weight"
    assert not torch.equal(dict(a.named_parameters())[q_proj], dict(base.named_parameters())[q_proj])  # the LoRA is merged in
    assert (tmp_path / "full" / "final" / "adapter" / "adapter_model.safetensors").is_file()
    print(f"resume test: 3 runs in {elapsed:.1f} s, loss curve {[full[s][0] for s in sorted(full)]}, "
          f"largest difference {worst}")
