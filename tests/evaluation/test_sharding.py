"""`transformers-av evaluate` across processes: `accelerate launch` with 2 CPU processes (torchrun + gloo) gives the
same predictions, per-sample scores and summary as one process; each process appends to its own file; a later run
resumes from every process's file; the summary is printed at the end of every run, resumed ones included."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time

import pytest
import torch

from transformers_av.evaluation.runner import _progress_bar, read_jsonl
from transformers_av.evaluation.sharding import merge_in_manifest_order, predictions_file, shard
from transformers_av.testing import make_av_clip


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    from transformers_av import AvLlmForConditionalGeneration
    from transformers_av.presets.tiny import tiny_av_llm_config, tiny_av_llm_processor

    root = tmp_path_factory.mktemp("sharded_eval")
    torch.manual_seed(0)
    config = tiny_av_llm_config()  # (the tiny FAVOR answers every one of these prompts alike)
    AvLlmForConditionalGeneration(config).save_pretrained(root / "model")
    tiny_av_llm_processor(config).save_pretrained(root / "model")
    # 5 clips of one length, different pictures and sounds
    palette = [["red"], ["blue"], ["green", "white"], ["black"], ["yellow", "red"]]
    for i, colors in enumerate(palette):
        make_av_clip(root / "media" / f"c{i}.mp4", seconds=1.0, fps=4, size=(32, 32), colors=colors,
                     beep_at=[0.1 * (i + 1)], seed=i)
    # different questions too: prompts of different lengths, so batches are left-padded differently in the two runs
    questions = ["where is this place", "what colour is the wall", "is there a sound", "who is there", "what happens"]
    rows = [{"id": f"s{i}", "question": q, "choices": ["mall", "river"], "answer": ["river", "mall"][i % 2],
             "video": f"c{i}.mp4"} for i, q in enumerate(questions)]
    (root / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return root


def _arguments(workspace, output):
    return ["evaluate", "--model", str(workspace / "model"), "--task", "nextqa_mc", "--data",
            str(workspace / "manifest.jsonl"), "--media-root", str(workspace / "media"), "--output", str(output),
            "--batch-size", "2", "--max-new-tokens", "3", "--no-progress", "--rule", "multiple_choice_lenient"]


def test_two_processes_equal_one_and_resume_from_each_others_files(workspace, capsys):
    from transformers_av.cli import main

    single = workspace / "single"
    assert main(_arguments(workspace, single)) == 0
    capsys.readouterr()

    sharded = workspace / "sharded"
    env = dict(os.environ, ACCELERATE_USE_CPU="true", CUDA_VISIBLE_DEVICES="", OMP_NUM_THREADS="1",
               TOKENIZERS_PARALLELISM="false", HF_HUB_OFFLINE="1")
    # --multi_gpu is accelerate's torchrun launcher; on CPU it falls back to gloo (see tests/training/test_cli.py)
    command = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
               "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
               "--main_process_port", str(_free_port()), "-m", "transformers_av.cli", *_arguments(workspace, sharded)]
    start = time.perf_counter()
    try:
        result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=240)
    except subprocess.TimeoutExpired as error:
        pytest.fail(f"the 2-process evaluation hung (no result in 240 s):\n{(error.stderr or b'')[-3000:]}")
    assert result.returncode == 0, result.stderr[-5000:]
    print(f"2-process evaluation: {time.perf_counter() - start:.1f} s")

    # each process answered its strided shard, in its own file
    assert [r["id"] for r in read_jsonl(sharded / "predictions.rank0.jsonl")] == ["s0", "s2", "s4"]
    assert [r["id"] for r in read_jsonl(sharded / "predictions.rank1.jsonl")] == ["s1", "s3"]
    assert not (sharded / "predictions.jsonl").exists()
    # rank 0 merged in manifest order: the same records (predictions, prompts, per-sample scores) and summary
    single_results, sharded_results = read_jsonl(single / "results.jsonl"), read_jsonl(sharded / "results.jsonl")
    assert [r["id"] for r in sharded_results] == ["s0", "s1", "s2", "s3", "s4"]
    assert sharded_results == single_results
    assert len({r["prediction"] for r in single_results}) > 1  # the samples do get different answers
    single_summary = json.loads((single / "summary.json").read_text())
    assert json.loads((sharded / "summary.json").read_text()) == single_summary
    assert "| nextqa_mc | accuracy ↑ |" in result.stdout  # rank 0 printed summary.md

    # an interrupted sharded run: rank 1 lost its last answer. One process resumes from both ranks' files and
    # generates only s3; the result is unchanged and the summary printed again.
    rank1 = sharded / "predictions.rank1.jsonl"
    rank1.write_text(rank1.read_text().splitlines()[0] + "\n")
    assert main(_arguments(workspace, sharded)) == 0
    assert [r["id"] for r in read_jsonl(sharded / "predictions.jsonl")] == ["s3"]
    assert read_jsonl(sharded / "results.jsonl") == single_results
    assert "| nextqa_mc | accuracy ↑ |" in capsys.readouterr().out


def test_shards_cover_the_manifest_once():
    samples = [{"id": str(i)} for i in range(7)]
    shards = [shard(samples, r, 3) for r in range(3)]
    assert [[s["id"] for s in part] for part in shards] == [["0", "3", "6"], ["1", "4"], ["2", "5"]]
    records = {s["id"]: s for part in shards for s in part}
    assert merge_in_manifest_order(samples, records) == samples
    del records["4"]
    with pytest.raises(RuntimeError, match="1 samples have no prediction in any predictions file: '4'"):
        merge_in_manifest_order(samples, records)
    with pytest.raises(ValueError, match=r"process index 3 is not in \[0, 3\)"):
        shard(samples, 3, 3)
    assert predictions_file("out", 0, 1).name == "predictions.jsonl"
    assert predictions_file("out", 1, 2).name == "predictions.rank1.jsonl"


def test_progress_bar_shows_rate_and_time_left(capsys):
    bar = _progress_bar(total=8, initial=2, description="nextqa_mc", enabled=True)
    bar.update(3)
    bar.close()
    line = capsys.readouterr().err.strip().splitlines()[-1].split("\r")[-1]
    assert line.startswith("nextqa_mc:") and "5/8 [" in line  # 2 resumed + 3 generated of 8
    assert "<" in line and ("sample/s" in line or "s/sample" in line)  # elapsed<remaining, rate
