"""Test helper: what a module is called with inside a block (for tests that count encoder calls and their batches)."""

from contextlib import contextmanager

import torch


@contextmanager
def batch_sizes_seen_by(module: torch.nn.Module):
    """Yields a list that collects the leading (batch) size of every input `module` receives inside the block."""
    sizes: list[int] = []
    handle = module.register_forward_hook(lambda _module, args, _output: sizes.append(args[0].shape[0]))
    try:
        yield sizes
    finally:
        handle.remove()
