"""The synthetic benchmark's recipe is reproducible: the same seed gives the same weights, bit for bit, whether the
clips are decoded in the training process or in a data-loading worker (what `benchmarks/ablation.py --jobs` relies on:
it trains with the decoding in-process); another seed gives other weights."""

from __future__ import annotations

from pathlib import Path

import pytest
from safetensors.torch import load_file

from transformers_av.synthetic.benchmark import write_benchmark
from transformers_av.training import load_train_settings, run_training

RECIPE = Path(__file__).resolve().parents[2] / "examples" / "synthetic" / "video_salmonn.yaml"


@pytest.fixture(scope="module")
def benchmark(tmp_path_factory):
    root = tmp_path_factory.mktemp("benchmark")
    write_benchmark(root, seed=3, sizes={"train": 10}, train_weights={"speech": 3, "count": 2})
    return root


def _train(benchmark: Path, output: Path, **overrides) -> dict:
    settings = load_train_settings(RECIPE, {
        "train_data": str(benchmark / "train.jsonl"), "output_dir": str(output), "max_steps": 3,
        "per_device_train_batch_size": 4, "save_steps": 1000, "logging_steps": 1000, **overrides,
    })
    result = run_training(settings)
    weights = load_file(Path(result["final_dir"]) / "model.safetensors")
    return {"loss": result["train_loss"], "weights": weights}


def test_same_seed_same_weights_in_process_or_in_a_worker(benchmark, tmp_path):
    in_process = _train(benchmark, tmp_path / "a", seed=0, dataloader_num_workers=0)
    in_worker = _train(benchmark, tmp_path / "b", seed=0, dataloader_num_workers=1)
    other_seed = _train(benchmark, tmp_path / "c", seed=1, dataloader_num_workers=0)
    assert in_process["weights"].keys() == in_worker["weights"].keys()
    for name, tensor in in_process["weights"].items():
        assert tensor.equal(in_worker["weights"][name]), name
    assert in_process["loss"] == in_worker["loss"]
    changed = [name for name, tensor in in_process["weights"].items() if not tensor.equal(other_seed["weights"][name])]
    assert len(changed) > len(in_process["weights"]) // 2 and in_process["loss"] != other_seed["loss"]
