import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402

import transformers_av  # noqa: E402,F401  (registers the Auto classes)

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
