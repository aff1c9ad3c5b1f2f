"""A saved checkpoint carries its code: it loads with trust_remote_code=True where transformers_av cannot be imported."""

import os
import subprocess
import sys
import textwrap

import pytest
import torch

from transformers_av import FavorForConditionalGeneration
from transformers_av.presets.tiny import tiny_favor_config
from transformers_av.presets.tiny import tiny_clip_vision_config

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


CONFIGS = {
    "instructblip": lambda: tiny_favor_config("video_salmonn", image_size=28),
    # a registered visual encoder part other than the default travels with the code too
    "clip": lambda: tiny_favor_config("favor", vision_config=tiny_clip_vision_config(84).to_dict(), num_query_tokens=36),
}


@pytest.mark.parametrize("visual_encoder", list(CONFIGS))
def test_checkpoint_loads_with_trust_remote_code_without_the_package(tmp_path, visual_encoder):
    torch.manual_seed(0)
    model = FavorForConditionalGeneration(CONFIGS[visual_encoder]()).eval()
    model.save_pretrained(tmp_path / "checkpoint")
    assert (tmp_path / "checkpoint" / "modeling_favor.py").exists()
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


PROCESSOR_LOADER = textwrap.dedent(
    """
    import sys
    import torch
    sys.modules["transformers_av"] = None  # any `import transformers_av` now fails
    from transformers import AutoProcessor
    path, video, out = sys.argv[1], sys.argv[2], sys.argv[3]
    processor = AutoProcessor.from_pretrained(path, trust_remote_code=True)
    modules = [type(processor).__module__, type(processor.image_processor).__module__,
               type(processor.audio_feature_extractor).__module__]
    assert all(m.startswith("transformers_modules") for m in modules), modules
    batch = processor(text=["What is shown?", "What is said?"], videos=[video, None], audio=[None, video],
                      answers=["red", "a beep"])
    torch.save({key: value for key, value in batch.items()}, out)
    """
)


def test_processor_loads_with_trust_remote_code_without_the_package(tmp_path):
    import json

    from transformers_av.synthetic.media import make_av_clip
    from transformers_av.presets.tiny import tiny_processor

    processor = tiny_processor(tiny_favor_config("video_salmonn", image_size=28))
    processor.save_pretrained(tmp_path / "checkpoint")
    saved = json.loads((tmp_path / "checkpoint" / "processor_config.json").read_text())
    assert saved["auto_map"] == {"AutoProcessor": "processing_favor.FavorProcessor"}
    assert saved["image_processor"]["auto_map"] == {"AutoImageProcessor": "image_processing_favor.FavorImageProcessor"}
    assert saved["audio_feature_extractor"]["auto_map"] == {
        "AutoFeatureExtractor": "feature_extraction_beats.BeatsFeatureExtractor"
    }
    for name in ("processing_favor.py", "image_processing_favor.py", "feature_extraction_beats.py", "video.py", "audio.py", "windows.py"):
        assert (tmp_path / "checkpoint" / name).exists(), name
    video = make_av_clip(tmp_path / "clip.mp4", seconds=2.0, fps=4, beep_at=[1.0], size=(32, 32)).path
    (tmp_path / "loader.py").write_text(PROCESSOR_LOADER)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["HF_MODULES_CACHE"] = str(tmp_path / "modules")
    result = subprocess.run(
        [sys.executable, str(tmp_path / "loader.py"), str(tmp_path / "checkpoint"), str(video), str(tmp_path / "out.pt")],
        env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    remote = torch.load(tmp_path / "out.pt")
    expected = processor(text=["What is shown?", "What is said?"], videos=[str(video), None], audio=[None, str(video)],
                         answers=["red", "a beep"])
    assert remote.keys() == expected.keys()
    for key, value in expected.items():
        assert remote[key].dtype == value.dtype and torch.equal(remote[key], value), key


AV_LLM_LOADER = textwrap.dedent(
    """
    import sys
    import torch
    sys.modules["transformers_av"] = None  # any `import transformers_av` now fails
    from transformers import AutoModelForMultimodalLM, AutoProcessor
    path, video, out = sys.argv[1], sys.argv[2], sys.argv[3]
    model = AutoModelForMultimodalLM.from_pretrained(path, trust_remote_code=True).eval()
    processor = AutoProcessor.from_pretrained(path, trust_remote_code=True)
    modules = [type(model).__module__, type(model.config).__module__, type(processor).__module__]
    assert all(m.startswith("transformers_modules") for m in modules), modules
    batch = processor(text=["<AUD_VIS> What is shown?", "<AUD> What is said?", "Hello"], videos=[video, video, None])
    with torch.no_grad():
        logits = model(**batch).logits
    torch.save({"batch": dict(batch), "logits": logits}, out)
    """
)


def test_av_llm_checkpoint_and_processor_load_with_trust_remote_code_without_the_package(tmp_path):
    import json

    from transformers_av import AvLlmForConditionalGeneration
    from transformers_av.presets.tiny import tiny_av_llm_config
    from transformers_av.synthetic.media import make_av_clip
    from transformers_av.presets.tiny import tiny_av_llm_processor

    torch.manual_seed(0)
    config = tiny_av_llm_config()
    model, processor = AvLlmForConditionalGeneration(config).eval(), tiny_av_llm_processor(config)
    folder = tmp_path / "checkpoint"
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    assert json.loads((folder / "config.json").read_text())["auto_map"]["AutoModelForMultimodalLM"] == (
        "modeling_av_llm.AvLlmForConditionalGeneration"
    )
    assert json.loads((folder / "processor_config.json").read_text())["auto_map"] == {
        "AutoProcessor": "processing_av_llm.AvLlmProcessor"
    }
    video = make_av_clip(tmp_path / "clip.mp4", seconds=2.0, fps=4, beep_at=[1.0], size=(32, 32)).path
    (tmp_path / "loader.py").write_text(AV_LLM_LOADER)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["HF_MODULES_CACHE"] = str(tmp_path / "modules")
    result = subprocess.run(
        [sys.executable, str(tmp_path / "loader.py"), str(folder), str(video), str(tmp_path / "out.pt")],
        env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    remote = torch.load(tmp_path / "out.pt")
    expected = processor(text=["<AUD_VIS> What is shown?", "<AUD> What is said?", "Hello"], videos=[str(video), str(video), None])
    assert remote["batch"].keys() == expected.keys()
    for key, value in expected.items():
        assert torch.equal(remote["batch"][key], value), key
    with torch.no_grad():
        assert torch.equal(remote["logits"], model(**expected).logits)
