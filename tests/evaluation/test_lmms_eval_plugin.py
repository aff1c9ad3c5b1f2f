"""The lmms-eval plugin (`--model favor`) run by lmms-eval itself on a tiny local task, against direct generation.

lmms-eval is installed with `--no-deps` plus the `lmms` extra (see pyproject.toml, .ci/run and the README's test
command); without it these tests fail with the command that installs it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from transformers_av.evaluation.lmms_eval_plugin import _batches, _generation_settings, _messages_to_inputs

TASK = "favor_tiny_av"
MAX_NEW_TOKENS = 3

# `python -m lmms_eval ARGS`, with FavorForConditionalGeneration.generate recording the tensors it receives
# (one file per call) so that the test can check what reached the model.
RUNNER = '''
import runpy, sys
from pathlib import Path

import torch

from transformers_av.models.favor.modeling_favor import FavorForConditionalGeneration

record = Path(sys.argv.pop(1))
original = FavorForConditionalGeneration.generate


def generate(self, *args, **kwargs):
    calls = len(list(record.glob("call*.pt")))
    torch.save({k: v for k, v in kwargs.items() if isinstance(v, torch.Tensor)}, record / f"call{calls}.pt")
    return original(self, *args, **kwargs)


FavorForConditionalGeneration.generate = generate
sys.argv[0] = "lmms_eval"
runpy.run_module("lmms_eval", run_name="__main__", alter_sys=True)
'''

UTILS = '''
def doc_to_visual(doc):
    # lmms-eval turns these into chat parts: a .mp4 path -> video, a .wav path -> audio
    return [path for path in (doc["video"], doc["audio"]) if path]
'''


def _task_yaml(data_file: Path) -> str:
    return f"""task: {TASK}
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data_file}
test_split: test
output_type: generate_until
doc_to_visual: !function {TASK}_utils.doc_to_visual
doc_to_text: "{{{{question}}}}"
doc_to_target: answer
generation_kwargs:
  max_new_tokens: {MAX_NEW_TOKENS}
  temperature: 0
metric_list:
  - metric: exact_match
    aggregation: mean
    higher_is_better: true
"""


def require_lmms_eval() -> None:
    try:
        import lmms_eval  # noqa: F401
    except ImportError:
        pytest.fail('lmms-eval is not installed: pip install --no-deps "lmms-eval==0.7.3" (its used dependencies come '
                    'with the `lmms` extra of pip install -e ".[dev]")')


def _run_lmms_eval(root: Path, model_name: str) -> SimpleNamespace:
    """`python -m lmms_eval --model <model_name>` (batch_size=2) on the tiny local task, for the model saved in
    root / "model"."""
    from transformers_av.testing import make_av_clip, make_tone, write_wav

    clip = str(make_av_clip(root / "media" / "clip.mp4", seconds=1.0, fps=4, size=(32, 32)).path)
    tone = str(write_wav(root / "media" / "tone.wav", make_tone(440.0, 1.5), 16000))
    rows = [  # the clip with its own sound track; the clip with a separate sound track; that sound alone
        {"question": "What do you hear?", "video": clip, "audio": None, "answer": "a beep"},
        {"question": "What is the sound?", "video": clip, "audio": tone, "answer": "a tone"},
        {"question": "Describe the audio.", "video": None, "audio": tone, "answer": "a tone"},
    ]
    tasks = root / "tasks"
    tasks.mkdir()
    (tasks / "samples.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tasks / f"{TASK}_utils.py").write_text(UTILS)
    (tasks / f"{TASK}.yaml").write_text(_task_yaml(tasks / "samples.jsonl"))
    runner = root / "run_lmms_eval.py"
    runner.write_text(RUNNER)
    record = root / "record"
    record.mkdir()

    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_CACHE": str(root / "hf_datasets"),
           "TOKENIZERS_PARALLELISM": "false"}
    command = [sys.executable, str(runner), str(record), "--model", model_name,
               "--model_args", f"pretrained={root / 'model'}", "--batch_size", "2", "--tasks", TASK,
               "--include_path", str(tasks), "--output_path", str(root / "out"), "--log_samples",
               "--device", "cpu", "--verbosity", "DEBUG"]  # DEBUG: lmms-eval re-raises errors (non-zero exit)
    done = subprocess.run(command, cwd=root, env=env, capture_output=True, text=True, timeout=300)
    log = done.stdout[-4000:] + done.stderr[-4000:]
    assert done.returncode == 0, log
    return SimpleNamespace(root=root, rows=rows, record=record, log=log, clip=clip, tone=tone)


@pytest.fixture(scope="module")
def lmms_run(tmp_path_factory):
    """Tiny video-SALMONN + local task; `python -m lmms_eval --model favor` run once."""
    require_lmms_eval()
    from transformers_av.models.favor.modeling_favor import FavorForConditionalGeneration
    from transformers_av.testing import tiny_favor_config
    from transformers_av.presets.tiny import tiny_processor

    root = tmp_path_factory.mktemp("lmms")
    torch.manual_seed(0)
    config = tiny_favor_config("video_salmonn")
    FavorForConditionalGeneration(config).save_pretrained(root / "model")
    tiny_processor(config).save_pretrained(root / "model")
    return _run_lmms_eval(root, "favor")


def _direct_answers(run) -> list[str]:
    """Greedy generation on the processor inputs of lmms-eval's two batches ([0, 1] and [2]), cut at lmms-eval's
    default stop string "\n\n" as the plugin does."""
    from transformers import AutoModelForMultimodalLM, AutoProcessor

    model = AutoModelForMultimodalLM.from_pretrained(run.root / "model").eval()
    processor = AutoProcessor.from_pretrained(run.root / "model")
    rows = run.rows
    answers = []
    for encoded in (
        processor(text=[rows[0]["question"], rows[1]["question"]], videos=[run.clip, run.clip], audio=[None, run.tone],
                  return_tensors="pt"),
        processor(text=rows[2]["question"], audio=run.tone, return_tensors="pt"),
    ):
        with torch.inference_mode():
            output = model.generate(**encoded, max_new_tokens=MAX_NEW_TOKENS, do_sample=False, num_beams=1)
        answers += processor.batch_decode(output[:, encoded["input_ids"].shape[1]:], skip_special_tokens=True)
    return [t.split("\n\n")[0].strip() for t in answers]


def _saved(run, pattern):
    found = sorted((run.root / "out").rglob(pattern))
    assert len(found) == 1, (pattern, found, run.log)
    return found[0]


def test_lmms_eval_runs_favor_and_matches_direct_generation(lmms_run):
    from transformers import AutoProcessor

    run = lmms_run
    samples = {}
    for line in _saved(run, f"*_samples_{TASK}.jsonl").read_text().splitlines():
        record = json.loads(line)
        samples[record["doc_id"]] = record
    assert sorted(samples) == [0, 1, 2], run.log
    results = json.loads(_saved(run, "*_results.json").read_text())
    assert "exact_match,none" in results["results"][TASK]
    assert results["config"]["model"] == "favor"

    # What reached the model: one generate call per batch of 2 (lmms-eval's request order).
    calls = [torch.load(run.record / f"call{i}.pt") for i in range(len(list(run.record.glob("call*.pt"))))]
    assert len(calls) == 2, run.log

    processor = AutoProcessor.from_pretrained(run.root / "model")
    rows = run.rows
    direct = [
        processor(text=[rows[0]["question"], rows[1]["question"]], videos=[run.clip, run.clip],
                  audio=[None, run.tone], return_tensors="pt"),
        processor(text=rows[2]["question"], audio=run.tone, return_tensors="pt"),
    ]
    for call, encoded in zip(calls, direct):
        assert set(call) == set(encoded)
        for key in encoded:
            assert torch.equal(call[key], encoded[key]), key

    # The audio: sample 0 hears the clip's own track, sample 1 the separate wav instead, sample 2 the wav alone.
    own_track = processor(text="q", audio=run.clip, return_tensors="pt")["input_features"][0]
    wav = processor(text="q", audio=run.tone, return_tensors="pt")["input_features"][0]
    assert calls[0]["modality_mask"].tolist() == [[1.0, 1.0], [1.0, 1.0]]
    assert torch.equal(calls[0]["input_features"][0], own_track)
    assert torch.equal(calls[0]["input_features"][1], wav) and not torch.equal(own_track, wav)
    assert calls[1]["modality_mask"].tolist() == [[0.0, 1.0]] and "pixel_values_videos" not in calls[1]
    assert torch.equal(calls[1]["input_features"][0], wav)

    # lmms-eval's saved outputs are what greedy generation gives on the same processor inputs.
    assert [samples[i]["filtered_resps"] for i in range(3)] == _direct_answers(run)
    assert [samples[i]["target"] for i in range(3)] == [r["answer"] for r in rows]
    prompt_tokens = [int(n) for encoded in direct for n in encoded["attention_mask"].sum(-1)]
    assert [samples[i]["token_counts"][0]["input_tokens"] for i in range(3)] == prompt_tokens


def test_lmms_eval_runs_an_audio_visual_llm_like_direct_generation(tmp_path):
    """`--model av_llm`: the same chat class serves the Audio-Visual LLM (model and processor come from the Auto
    classes); video, the video's sound track and a separate audio reach it."""
    require_lmms_eval()
    from transformers_av import AvLlmForConditionalGeneration
    from transformers_av.presets.tiny import tiny_av_llm_config
    from transformers_av.presets.tiny import tiny_av_llm_processor

    torch.manual_seed(0)
    config = tiny_av_llm_config()
    AvLlmForConditionalGeneration(config).save_pretrained(tmp_path / "model")
    tiny_av_llm_processor(config).save_pretrained(tmp_path / "model")
    run = _run_lmms_eval(tmp_path, "av_llm")
    samples = {}
    for line in _saved(run, f"*_samples_{TASK}.jsonl").read_text().splitlines():
        record = json.loads(line)
        samples[record["doc_id"]] = record
    assert sorted(samples) == [0, 1, 2], run.log
    assert [samples[i]["filtered_resps"] for i in range(3)] == _direct_answers(run)
    assert json.loads(_saved(run, "*_results.json").read_text())["config"]["model"] == "av_llm"


def test_entry_point_registers_favor_and_alias():
    require_lmms_eval()
    from lmms_eval.models import MODEL_REGISTRY_V2

    for name in ("favor", "video_salmonn", "av_llm"):
        resolved = MODEL_REGISTRY_V2.resolve(name)
        assert resolved.model_type == "chat"
        assert resolved.class_path == "transformers_av.evaluation.lmms_eval_plugin.FavorChat"
    from transformers_av.evaluation.lmms_eval_plugin import FavorChat

    assert FavorChat.is_simple is False


def test_messages_with_dataset_audio_and_segments():
    waveform = {"array": np.zeros(800, dtype=np.float32), "sampling_rate": 8000, "path": None}
    # lmms-eval labels a dict visual "video" unless it carries a type: a datasets Audio value is audio
    inputs = _messages_to_inputs([{"role": "user", "content": [{"type": "video", "url": waveform},
                                                               {"type": "text", "text": " Q? "}]}])
    assert inputs == {"text": "Q?", "audio": waveform}
    system = [{"role": "system", "content": [{"type": "text", "text": "Be brief."}]},
              {"role": "user", "content": [{"type": "image", "url": "a.png"}, {"type": "text", "text": "Q?"}]},
              {"role": "assistant", "content": [{"type": "text", "text": "ignored"}]}]
    assert _messages_to_inputs(system) == {"text": "Be brief.\nQ?", "images": "a.png"}
    with pytest.raises(ValueError, match="video segments"):
        _messages_to_inputs([{"role": "user", "content": [{"type": "video", "url": "a.mp4", "start_time": 1.0}]}])


def test_generation_settings_and_batches():
    assert _generation_settings({"until": ["\n\n"], "max_new_tokens": 8, "temperature": 0, "top_p": 0.9}, 128) == (
        {"max_new_tokens": 8, "num_beams": 1, "do_sample": False}, ["\n\n"]
    )
    assert _generation_settings({"temperature": 0.7, "top_p": 0.9, "top_k": 5, "until": "END"}, 16) == (
        {"max_new_tokens": 16, "num_beams": 1, "do_sample": True, "temperature": 0.7, "top_p": 0.9, "top_k": 5},
        ["END"],
    )
    requests = [SimpleNamespace(args=("", None, kwargs, i, "t", "test"))
                for i, kwargs in enumerate([{"a": 1}, {"a": 2}, {"a": 1}, {"a": 1}, None])]
    assert _batches(requests, 2) == [[0, 2], [3], [1], [4]]
