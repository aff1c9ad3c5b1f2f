import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402

import transformers_av  # noqa: E402,F401  (registers the Auto classes)

# at most 2 intra-op threads by default; an explicit OMP_NUM_THREADS wins (tools/check_portability.sh runs the suite
# with 1 and 2 threads: the thread count changes how fp32 reductions are split)
if "OMP_NUM_THREADS" not in os.environ:
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
