"""Each published recipe runs through `transformers-av train` on a tiny random-weight model and learns the synthetic
colour / tone task (its loss falls), with the recipe's data rules in force, and the card records the recipe.

The learning rates of the recipes (AV-LLM stage 2: 2e-5; FAVOR's storytelling: 1e-5; video-SALMONN's: the default
1e-4) are meant for pretrained 7B / 13B models: a random tiny model moves too little at them in a test's few steps to
measure, so these runs raise it; every other value is the recipe's (the total batch size becomes the tiny run's own
4, LoRA rank 8). Measured (32 steps, batch 4, the loss logged every 4 steps; mean of the first two logs -> mean of the
last two): av-llm-stage-2 (full LLM, lr 3e-3) 5.48 -> 2.20; video-salmonn-mixed (LoRA + connector,
lr 1e-2) 5.95 -> 5.75; favor-storytelling (LoRA + connector, lr 1e-2) 5.99 -> 5.64. A LoRA on the attention of a
2-layer random LLM with a frozen random head moves its answer distribution slowly, hence the 0.1-nat threshold.

Stage 1 trains only the projectors into a frozen RANDOM LLM: its tiny run does not measurably learn (the loss stays
within 0.1 of ln 512); what it trains (the projectors and nothing else, the recipe's schedule) is checked by
`test_av_llm_stages.py::test_stage_one_trains_only_the_projectors`.
"""

from __future__ import annotations

import json

import pytest

from transformers_av.presets.paper import TRAINING_RECIPES
from transformers_av.presets.tiny import tiny_speech_config
from transformers_av.synthetic.tasks import make_modality_match_task
from transformers_av.training import load_train_settings, run_training
from transformers_av.training.storytelling import make_storytelling_set

STEPS = 32
#: a tiny FAVOR model with 1 s Whisper chunks (the default 30 s chunk makes every clip 30 s of audio-visual frames)
FAVOR_OVERRIDES = {"image_size": 28, "audio_chunk_seconds": 1.0, "max_audio_chunks": 1,
                   "speech_config": {**tiny_speech_config(), "max_source_positions": 50}}


def _curve(output):
    history = json.loads((output / "trainer_state.json").read_text())["log_history"]
    return [entry["loss"] for entry in history if "loss" in entry]


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    root = tmp_path_factory.mktemp("recipe_clips")
    make_modality_match_task(root, 12, seed=7, seconds=1.0, fps=2)
    return root


@pytest.fixture(scope="module")
def stories(clips, tmp_path_factory):
    """A storytelling set over the clips: each clip's video with another clip's sound track, and a story that names
    both (a stand-in generator: the test has no LLM)."""
    rows = [json.loads(line) for line in (clips / "data.jsonl").read_text().splitlines()]
    manifest = clips / "manifest.jsonl"
    manifest.write_text("".join(json.dumps({
        "video": row["video"], "video_description": f"The screen is {row['answer']}.",
        "audio": rows[(i + 1) % len(rows)]["video"], "audio_caption": f"A {rows[(i + 1) % len(rows)]['answer']} tone.",
    }) + "\n" for i, row in enumerate(rows)))

    def tell(prompt: str) -> str:
        heard = prompt.split("transcription: A ")[1].split(" tone")[0]
        seen = prompt.split("The screen is ")[1].split(".")[0]
        return f"I see {seen} and hear {heard}."

    output = tmp_path_factory.mktemp("stories") / "stories.jsonl"
    make_storytelling_set(manifest, output, tell)
    return output


@pytest.mark.parametrize(
    "recipe, model, learning_rate",
    [
        ("av-llm-stage-2", "tiny-av-llm", 3e-3),
        ("video-salmonn-mixed", "tiny-video-salmonn", 1e-2),
        ("favor-storytelling", "tiny-favor", 1e-2),
    ],
)
def test_a_tiny_run_of_each_recipe_learns(recipe, model, learning_rate, clips, stories, tmp_path):
    data = stories if recipe == "favor-storytelling" else clips / "data.jsonl"
    overrides = {
        "model": model, "model_config_overrides": FAVOR_OVERRIDES if model != "tiny-av-llm" else {},
        "train_data": str(data), "recipe": recipe, "output_dir": str(tmp_path / "run"), "max_steps": STEPS,
        "per_device_train_batch_size": 4, "total_train_batch_size": 4, "logging_steps": 4, "save_steps": 1000,
        "disable_tqdm": True, "seed": 0, "lora_r": 8,
    }
    if learning_rate is not None:
        overrides["learning_rate"] = learning_rate
    settings = load_train_settings(overrides=overrides)
    recipe_values = TRAINING_RECIPES[recipe].settings
    for name, value in recipe_values.items():  # the recipe's values, but for what this test sets
        if name not in overrides:
            assert getattr(settings, name) == value, name
    summary = run_training(settings)
    assert summary["recipe"] == recipe and summary["global_step"] == STEPS
    curve = _curve(tmp_path / "run")
    assert len(curve) == STEPS // 4
    assert sum(curve[-2:]) / 2 < sum(curve[:2]) / 2 - 0.1, curve


def test_the_card_records_the_recipe_and_its_total_batch():
    from transformers import TrainingArguments

    from transformers_av.hub.card import TrainingDetails, _training_section

    args = TrainingArguments(output_dir="unused", per_device_train_batch_size=4, gradient_accumulation_steps=8,
                             num_train_epochs=3, learning_rate=2e-3, use_cpu=True, report_to=[])
    recipe = TRAINING_RECIPES["av-llm-stage-1"]
    details = TrainingDetails.from_training_arguments(args, recipe=recipe.name, recipe_source=recipe.source)
    assert details.hyperparameters["total_train_batch_size"] == 32 and details.hyperparameters["processes"] == 1
    assert details.hyperparameters["num_train_epochs"] == 3
    # a job's world size (to_dict() leaves it out) counts: 4 per device x 8 accumulation x 8 processes = 256
    values = {**args.to_dict(), "world_size": 8}
    assert TrainingDetails.from_training_arguments(values).hyperparameters["total_train_batch_size"] == 256
    section = _training_section(details)
    assert "Recipe: `av-llm-stage-1` (Shu et al. 2023, §4.1 Implementation Details" in section
    assert "| total_train_batch_size | 32 |" in section and "| num_train_epochs | 3 |" in section
    assert "total batch size of 256 and set the training epoch of 3" in section
