"""FSDP2 (`torch.distributed.fsdp.fully_shard`) on a FAVOR model, 2 CPU processes over gloo: the sharded run follows
the same loss curve and ends with the same weights as one process averaging the two ranks' gradients.

accelerate cannot run this on CPU: `accelerate launch` with `distributed_type: FSDP` and `use_cpu: true` starts a
MULTI_CPU (DDP) job, because `AcceleratorState` only turns on FSDP for accelerator device types (accelerate/state.py:
the FSDP branch sits under `distributed_type in [MULTI_GPU, MULTI_XPU, ...]`, MULTI_CPU excluded). So the sharding is
applied here as accelerate's FSDP2 plugin applies it with `examples/accelerate/fsdp.yaml`: one unit per LLM decoder
layer, the rest (encoders, connector) in the root unit."""

from __future__ import annotations

import json
import os
import socket

import numpy as np
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.distributed.fsdp import fully_shard

from transformers_av import FavorForConditionalGeneration
from transformers_av.presets.tiny import tiny_favor_config, tiny_processor

IMAGE, STEPS, LR = 28, 3, 0.05


def make_batch(step: int, rank: int, processor):
    """Rank `rank`'s batch of step `step`: one clip, video + sound, its own length."""
    rng = np.random.default_rng(100 * step + rank)
    frames = rng.integers(0, 256, (2 + rank, 40, 40, 3), dtype=np.uint8)
    waveform = rng.standard_normal(16000 * (1 + rank)).astype(np.float32) * 0.1
    return processor(
        text="What is shown?", videos=[frames], audio=[waveform], sampling_rate=16000, answers=["a red square"],
        padding_side="right",
    )


def build():
    torch.manual_seed(0)
    config = tiny_favor_config("video_salmonn", image_size=IMAGE)
    model = FavorForConditionalGeneration(config)
    model.freeze_encoders()
    # training mode (so every rank also runs the encoders its batch lacks), without dropout: the sharded run and the
    # reference draw their dropout masks from different random streams
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
        for name in ("dropout", "attention_dropout"):
            if isinstance(getattr(module, name, None), float):
                setattr(module, name, 0.0)
    model.train()
    return model, tiny_processor(config)


def _sharded_worker(rank: int, world_size: int, port: int, out_dir: str):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), OMP_NUM_THREADS="1")
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world_size)
    try:
        model, processor = build()
        for layer in model.model.language_model.layers:
            fully_shard(layer)
        fully_shard(model)
        optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=LR)
        losses = []
        for step in range(STEPS):
            loss = model(**make_batch(step, rank, processor)).loss
            loss.backward()  # FSDP2 reduce-scatters the mean of the ranks' gradients
            optimizer.step()
            optimizer.zero_grad()
            losses.append(loss.item())
        weights = {n: p.detach().full_tensor().tolist() for n, p in model.named_parameters() if p.requires_grad}
        sharded = type(model.model.language_model.layers[0].self_attn.q_proj.weight).__name__
        with open(os.path.join(out_dir, f"rank-{rank}.json"), "w") as f:
            json.dump({"losses": losses, "weights": weights if rank == 0 else None, "sharded": sharded}, f)
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_fsdp2_two_cpu_ranks_follow_the_single_process_loss_curve(tmp_path):
    mp.spawn(_sharded_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    ranks = [json.loads((tmp_path / f"rank-{r}.json").read_text()) for r in (0, 1)]
    assert ranks[0]["sharded"] == "DTensor"  # the LLM weights really were sharded

    model, processor = build()
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=LR)
    expected = [[], []]
    for step in range(STEPS):
        total = 0
        for rank in (0, 1):
            loss = model(**make_batch(step, rank, processor)).loss
            expected[rank].append(loss.item())
            total = total + loss / 2  # the mean of the two ranks' gradients
        total.backward()
        optimizer.step()
        optimizer.zero_grad()
    for rank in (0, 1):
        # fp32 sums in another order (reduce-scatter vs one backward): a few ulps of O(6) losses
        np.testing.assert_allclose(ranks[rank]["losses"], expected[rank], rtol=0, atol=1e-5)
    for name, value in ranks[0]["weights"].items():
        # three SGD steps of lr 0.05 from the same start: differences stay at rounding level (measured below 1e-7)
        np.testing.assert_allclose(np.array(value), dict(model.named_parameters())[name].detach().numpy(), rtol=0, atol=1e-6)
