"""The evaluation machinery runs the Audio-Visual LLM unchanged: `transformers-av evaluate` on a saved tiny AV-LLM
gives exactly the answers of a direct `generate` on `AvLlmProcessor`'s inputs."""

from __future__ import annotations

import json

import torch

from transformers_av import AvLlmForConditionalGeneration
from transformers_av.evaluation import get_task
from transformers_av.evaluation.runner import read_jsonl
from transformers_av.testing import make_av_clip
from transformers_av.presets.tiny import tiny_av_llm_config
from transformers_av.presets.tiny import tiny_av_llm_processor


def test_cli_evaluate_runs_an_av_llm_like_direct_generate(tmp_path):
    from transformers_av.cli import main

    torch.manual_seed(0)
    config = tiny_av_llm_config()
    model, processor = AvLlmForConditionalGeneration(config).eval(), tiny_av_llm_processor(config)
    model_dir = tmp_path / "model"
    model.save_pretrained(model_dir)
    processor.save_pretrained(model_dir)

    media = tmp_path / "media"
    make_av_clip(media / "a.mp4", seconds=1.0, fps=4, size=(32, 32), colors=["red"])
    make_av_clip(media / "b.mp4", seconds=2.0, fps=4, size=(32, 32), colors=["blue"], beep_at=[0.5])
    rows = [{"id": f"s{i}", "question": "where is this place", "choices": ["mall", "river"], "answer": "river",
             "video": name} for i, name in enumerate(["a.mp4", "b.mp4", "a.mp4"])]
    manifest = tmp_path / "manifest.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "results"
    assert main(["evaluate", "--model", str(model_dir), "--task", "nextqa_mc", "--data", str(manifest),
                 "--media-root", str(media), "--output", str(out), "--batch-size", "2", "--max-new-tokens", "4",
                 "--no-progress"]) == 0
    records = read_jsonl(out / "predictions.jsonl")

    task = get_task("nextqa_mc")
    expected = []
    for row in rows:
        inputs = processor(text=task.format_prompt(row), videos=str(media / row["video"]))
        # no modality token in the prompt and a video with sound: both modalities, T + P + K media tokens
        assert int((inputs["input_ids"] == config.media_token_id).sum()) == 4 + 4 + 2
        with torch.inference_mode():
            output = model.generate(**inputs, max_new_tokens=4, do_sample=False)
        expected.append(processor.batch_decode(output[:, inputs["input_ids"].shape[1]:], skip_special_tokens=True)[0])
    assert [r["prediction"] for r in records] == [e.strip() for e in expected]
    assert json.loads((out / "summary.json").read_text())["n"] == 3
