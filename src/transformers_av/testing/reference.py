"""Reference helpers of the FAVOR connector, for tests and benchmarks.

* `randomized_connector`: a connector with every weight random (a fresh model's zero queries and unit LayerNorms
  would hide bugs);
* `reference_diversity_loss`: the diversity loss computed window by window.

The slow reference paths of the connector itself (the per-resolution loop it replaced, and a per-window loop) live
with the tests that use them (`tests/connector_reference.py`), next to the benchmark that times them.
"""

from __future__ import annotations

import torch
from torch import nn

from ..models.favor.connector import FavorConnector


def randomized_connector(config, seed: int = 0) -> FavorConnector:
    """A `FavorConnector` of `config` in eval mode with every weight random (normal, std 0.05; query tokens std 0.5;
    LayerNorm weights around 1): the zero-initialised query tokens and unit LayerNorms of a fresh model would hide
    bugs from tests."""
    torch.manual_seed(seed)
    connector = FavorConnector(config).eval()
    with torch.no_grad():
        for name, param in connector.named_parameters():
            param.normal_(0.0, 0.5 if "query_tokens" in name else 0.05)
            if "layer_norm" in name and name.endswith("weight"):
                param.add_(1.0)
    return connector


def reference_diversity_loss(config, resolution_outputs: list[torch.Tensor], plans) -> torch.Tensor:
    """Diversity loss computed window by window: mean off-diagonal cosine similarity between the queries of each
    real window (those of a sample's own window plan), over all samples, averaged over
    `config.diversity_loss_resolutions`."""
    losses = []
    for r in config.diversity_loss_resolutions:
        num_queries = config.resolutions[r][1]
        total, count = resolution_outputs[r].new_zeros(()), 0
        for out, plan in zip(resolution_outputs[r], plans):
            for w in range(plan.windows[r]):
                queries = out[w * num_queries : (w + 1) * num_queries]  # (n, H)
                unit = nn.functional.normalize(queries, dim=-1)
                cosine = unit @ unit.T
                total = total + cosine.sum() - cosine.diagonal().sum()
                count += num_queries * (num_queries - 1)
        losses.append(total / (count or 1))
    return torch.stack(losses).mean()


__all__ = ["randomized_connector", "reference_diversity_loss"]
