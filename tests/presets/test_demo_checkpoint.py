"""The shipped demo checkpoint (`presets/assets/demo_video_salmonn`): a tiny video-SALMONN trained from scratch on the
synthetic benchmark by `examples/synthetic/video_salmonn.yaml` (issue 16). It must answer clips it was never trained
on: the training split is benchmark seed 0's `train` stream, these tests ask other streams (`test` of seed 1, and the
`demo` stream the CLI draws from)."""

import re
from collections import Counter

import pytest
import torch
from transformers import AutoModelForMultimodalLM, AutoProcessor

from transformers_av.cli import main
from transformers_av.evaluation.scoring import exact_match
from transformers_av.presets import DEMO_CHECKPOINT
from transformers_av.synthetic.benchmark import FAMILIES, answer_rows, write_benchmark

TEST_CLIPS = 50  # 10 per family


@pytest.fixture(scope="module")
def shipped():
    model = AutoModelForMultimodalLM.from_pretrained(DEMO_CHECKPOINT).eval()
    return model, AutoProcessor.from_pretrained(DEMO_CHECKPOINT)


def test_shipped_checkpoint_is_small_and_complete():
    files = {path.name: path.stat().st_size for path in DEMO_CHECKPOINT.iterdir()}
    assert {"config.json", "model.safetensors", "processor_config.json"} <= set(files), sorted(files)
    assert sum(files.values()) < 8 * 2**20, files  # "a few MB"


def test_shipped_checkpoint_answers_unseen_test_clips(tmp_path, shipped):
    model, processor = shipped
    rows = write_benchmark(tmp_path, seed=1, sizes={"test": TEST_CLIPS})["test"]
    answers = answer_rows(model, processor, rows, media_root=tmp_path, batch_size=10)
    right = Counter(row["family"] for row, answer in zip(rows, answers) if exact_match(answer, row["answer"]))
    total = Counter(row["family"] for row in rows)
    per_family = {family: f"{right[family]}/{total[family]}" for family in FAMILIES}
    assert sum(right.values()) >= 0.9 * len(rows), per_family


def test_shipped_checkpoint_uses_the_sound(tmp_path, shipped):
    """The audio families are answered from the sound, not from priors: with the audio switched off
    (`modality_mask` [1, 0]) the model loses the `speech` digits it reads with it."""
    model, processor = shipped
    rows = write_benchmark(tmp_path, seed=2, sizes={"test": 10}, families=["speech"])["test"]
    inputs = processor(text=[row["prompt"] for row in rows], videos=[str(tmp_path / row["video"]) for row in rows])

    def answers(batch):
        with torch.inference_mode():
            output = model.generate(**batch, max_new_tokens=8, do_sample=False, num_beams=1)
        decoded = processor.tokenizer.batch_decode(output[:, batch["input_ids"].shape[1]:], skip_special_tokens=True)
        return sum(exact_match(answer, row["answer"]) for answer, row in zip(decoded, rows))

    muted = dict(inputs, modality_mask=inputs["modality_mask"] * torch.tensor([1.0, 0.0]))
    assert answers(inputs) >= 8 and answers(muted) <= 2


def test_demo_answers_nine_of_ten_fresh_seeds(capsys):
    """The README's first command, over ten seeds: each draws a fresh clip of the `demo` stream (the family cycles
    with the seed, so every family is asked twice) and the shipped checkpoint answers it."""
    judged = []
    for seed in range(10):
        assert main(["demo", "--seed", str(seed)]) == 0
        out = capsys.readouterr().out
        assert "trained on the synthetic benchmark" in out and "RANDOM" not in out
        judged.append(re.search(r"^correct: +(yes|no)$", out, flags=re.MULTILINE).group(1))
    assert judged.count("yes") >= 9, judged


def test_install_demo_checkpoint_copies_weights_and_processor_without_code(tmp_path):
    """`python -m transformers_av.presets.demo_checkpoint FOLDER`: the installed folder loads through the Auto
    classes to the same weights and processor, with no source copies, `auto_map` or training state."""
    from transformers_av.presets import TINY_MODELS
    from transformers_av.presets.demo_checkpoint import main as install

    model, processor = TINY_MODELS["tiny-video-salmonn-synthetic"].build()
    model.save_pretrained(tmp_path / "final")
    processor.save_pretrained(tmp_path / "final")
    (tmp_path / "final" / "training_args.bin").write_bytes(b"state")
    assert any((tmp_path / "final").glob("*.py")) and "auto_map" in (tmp_path / "final" / "config.json").read_text()

    assert install([str(tmp_path / "final"), "--target", str(tmp_path / "demo")]) == 0
    names = {path.name for path in (tmp_path / "demo").iterdir()}
    assert not any(name.endswith(".py") for name in names) and "training_args.bin" not in names
    assert "auto_map" not in (tmp_path / "demo" / "config.json").read_text()
    loaded = AutoModelForMultimodalLM.from_pretrained(tmp_path / "demo")
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), loaded.state_dict().values(), strict=True))
    reloaded = AutoProcessor.from_pretrained(tmp_path / "demo")
    assert reloaded(text="Hi?")["input_ids"].tolist() == processor(text="Hi?")["input_ids"].tolist()


def test_install_demo_checkpoint_refuses_a_folder_without_weights(tmp_path, capsys):
    from transformers_av.presets.demo_checkpoint import main as install

    (tmp_path / "demo").mkdir()
    (tmp_path / "demo" / "config.json").write_text("{}")
    assert install([str(tmp_path / "empty"), "--target", str(tmp_path / "demo")]) == 2
    assert "has no config.json, model.safetensors, processor_config.json" in capsys.readouterr().err
    assert (tmp_path / "demo" / "config.json").read_text() == "{}"  # the installed checkpoint is left as it was
