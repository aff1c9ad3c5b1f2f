"""A saved checkpoint carries its code: it loads with trust_remote_code=True where transformers_av cannot be imported."""

import os
import subprocess
import sys
import textwrap

import torch

from transformers_av import FavorForConditionalGeneration
from transformers_av.testing.configs import tiny_favor_config

LOADER = textwrap.dedent(
    """
    import sys
    import torch
    sys.modules["transformers_av"] = None  # any `import transformers_av` now fails
    from transformers import AutoConfig, AutoModelForMultimodalLM
    path, out = sys.argv[1], sys.argv[2]
    config = AutoConfig.from_pretrained(path, trust_remote_code=True)
    model = AutoModelForMultimodalLM.from_pretrained(path, trust_remote_code=True).eval()
    assert type(model).__module__.startswith("transformers_modules"), type(model).__module__
    assert type(config).__name__ == "FavorConfig"
    with torch.no_grad():
        torch.save(model(input_ids=torch.tensor([[1, 5, 6, 7]])).logits, out)
    """
)


def test_checkpoint_loads_with_trust_remote_code_without_the_package(tmp_path):
    torch.manual_seed(0)
    model = FavorForConditionalGeneration(tiny_favor_config("video_salmonn", image_size=28)).eval()
    model.save_pretrained(tmp_path / "checkpoint")
    assert (tmp_path / "checkpoint" / "favor.py").exists()
    (tmp_path / "loader.py").write_text(LOADER)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["HF_MODULES_CACHE"] = str(tmp_path / "modules")
    result = subprocess.run(
        [sys.executable, str(tmp_path / "loader.py"), str(tmp_path / "checkpoint"), str(tmp_path / "logits.pt")],
        env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    with torch.no_grad():
        expected = model(input_ids=torch.tensor([[1, 5, 6, 7]])).logits
    assert torch.equal(torch.load(tmp_path / "logits.pt"), expected)
