"""`transformers-av demo` runs both model families end to end on a generated clip and reports what it computed; by
default a fresh clip of the synthetic benchmark is asked its task's question and the answer judged by the task's rule."""

import re

import pytest
import torch

from transformers_av.cli import main
from transformers_av.evaluation.scoring import exact_match
from transformers_av.synthetic.benchmark import FAMILIES, make_benchmark_clip


@pytest.mark.parametrize("model", ["tiny-video-salmonn", "tiny-av-llm"])
def test_demo_runs_and_reports_every_stage(model, capsys):
    assert main(["demo", "--model", model, "--seconds", "2", "--max-new-tokens", "2"]) == 0
    out = capsys.readouterr().out
    assert "RANDOM weights" in out
    frames, tokens = map(int, re.search(r"frames: (\d+), audio-visual tokens: (\d+)", out).groups())
    if model == "tiny-av-llm":
        # 4 uniform frames; T + P + K = 4 + 4 + 2 media tokens (no modality token: the clip's video and its sound)
        assert (frames, tokens) == (4, 10)
        stages = ["vision_encoder", "audio_encoder", "connector"]
    else:
        # 2 s at 2 fps = 4 frames; the window plan gives a positive token count
        assert frames == 4 and tokens > 0
        stages = ["visual_encoder", "speech_encoder", "audio_encoder", "connector"]
    for stage in ["decode + preprocess", *stages, "LLM (prefill + decoding)"]:
        assert re.search(rf"  {re.escape(stage)} +\d+\.\d ms", out), (stage, out)


def demo_lines(out: str) -> dict[str, str]:
    return dict(re.findall(r"^(question|expected|answer|correct): +(.*)$", out, flags=re.MULTILINE))


def test_demo_default_asks_a_fresh_benchmark_clip_and_judges_the_answer(tmp_path, monkeypatch, capsys):
    """With a checkpoint in the package's demo folder the demo loads it through the Auto classes; its printed answer
    is the model's greedy answer to that seed's clip, judged by exact match."""
    import transformers_av.cli as cli
    from transformers_av.presets import TINY_MODELS
    from transformers_av.synthetic.benchmark import answer_rows

    torch.manual_seed(0)
    model, processor = TINY_MODELS["tiny-video-salmonn-synthetic"].build()
    model.save_pretrained(tmp_path / "demo")
    processor.save_pretrained(tmp_path / "demo")
    monkeypatch.setattr(cli, "DEMO_CHECKPOINT", tmp_path / "demo")
    for seed in (1000, 1003):
        assert main(["demo", "--seed", str(seed), "--max-new-tokens", "8"]) == 0
        out = capsys.readouterr().out
        family = list(FAMILIES)[seed % len(FAMILIES)]  # the default task cycles with the seed
        truth = make_benchmark_clip(tmp_path / f"{seed}.mp4", family, seed=seed)  # the `demo` stream: never trained on
        lines = demo_lines(out)
        assert f"trained on the synthetic benchmark ({tmp_path / 'demo'})" in out and "RANDOM" not in out
        assert lines["question"] == FAMILIES[family].question and lines["expected"] == truth["answer"]
        assert lines["answer"] == answer_rows(model.eval(), processor, [truth], max_new_tokens=8)[0]
        assert lines["correct"] == ("yes" if exact_match(lines["answer"], truth["answer"]) else "no")
        assert re.search(r"  LLM \(prefill \+ decoding\) +\d+\.\d ms", out)


def test_demo_without_a_shipped_checkpoint_says_so_and_runs_the_random_model(tmp_path, monkeypatch, capsys):
    import transformers_av.cli as cli

    monkeypatch.setattr(cli, "DEMO_CHECKPOINT", tmp_path / "absent")
    assert main(["demo", "--seed", "2", "--max-new-tokens", "2"]) == 0
    out = capsys.readouterr().out
    assert "no trained demo checkpoint is shipped" in out and "RANDOM weights" in out
    assert demo_lines(out)["expected"] == make_benchmark_clip(tmp_path / "2.mp4", "sync", seed=2)["answer"]


def test_demo_task_option_picks_the_family(capsys):
    assert main(["demo", "--task", "match", "--seed", "3"]) == 0
    out = capsys.readouterr().out
    assert "'match' task" in out and "question: Does the sound belong to this clip?" in out
    assert re.search(r"^expected: (yes|no)$", out, flags=re.MULTILINE)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["demo", "--video", "/no/such/clip.mp4", "--max-new-tokens", "1"], r"/no/such/clip\.mp4"),
        (["demo", "--model", "/no/such/model", "--seconds", "1"], r"/no/such/model"),
        (["demo", "--question", "Why?"], r"--question is for a clip given with --video"),
        (["demo", "--video", "x.mp4", "--task", "sync"], r"--task picks the generated clip's task"),
        (["demo", "--model", "tiny-favor", "--seconds", "1"], r"whole number of seconds >= 2, got seconds=1"),
        (["train", "--config", "/no/such/train.yaml"], r"No training config at /no/such/train\.yaml"),
        (["train", "--config", "{typo}"], r"unknown training setting 'learnig_rate'; did you mean 'learning_rate'\?"),
        (["train", "--config", "{broken}"], r"while parsing|expected"),
    ],
    ids=["missing-video", "unknown-model", "question-without-video", "task-with-video", "one-second-clip",
         "missing-config", "config-typo", "broken-yaml"],
)
def test_user_errors_are_one_line_and_exit_2(argv, message, tmp_path, capsys):
    typo, broken = tmp_path / "typo.yaml", tmp_path / "broken.yaml"
    typo.write_text("learnig_rate: 0.001\n")
    broken.write_text("learning_rate: [0.001\n")
    argv = [a.format(typo=typo, broken=broken) for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err
    first = err.splitlines()[0]
    assert first.startswith(f"transformers-av {argv[0]}: error: "), err
    assert re.search(message, err), err
    assert "Traceback" not in err


def test_traceback_kept_on_request(monkeypatch):
    monkeypatch.setenv("TRANSFORMERS_AV_TRACEBACK", "1")
    with pytest.raises(OSError):
        main(["demo", "--model", "/no/such/model", "--seconds", "1"])
