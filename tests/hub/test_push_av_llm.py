"""The Hub layer for the Audio-Visual LLM family, through the local Hub server (transformers_av.testing.hub_server).

As in test_hub.py, huggingface_hub reads HF_ENDPOINT / HF_HUB_OFFLINE at import time, so every client runs in a
subprocess whose environment points at the server; the server runs in this process and the assertions read its
storage and request log directly. The tiny model has T = 3 frames, P = 4 patches and K = 2 audio segments (three
different numbers, so the card cannot mix them up)."""

import json
import os
import re
import subprocess
import sys
import textwrap

import pytest
import torch
from huggingface_hub import ModelCard
from safetensors.torch import load_file

from transformers_av import AvLlmForConditionalGeneration
from transformers_av import hub as hub_module
from transformers_av.hub import push as hub_push
from transformers_av.hub import (
    UploadRefusedError,
    push_folder_to_hub,
    render_model_card,
    validate_folder_for_upload,
    validate_processor_for_upload,
)
from transformers_av.presets.tiny import tiny_av_llm_config
from transformers_av.testing.hub_server import LocalHubServer
from transformers_av.synthetic.media import make_av_clip
from transformers_av.presets.tiny import tiny_av_llm_processor, tiny_processor

REPO = "user/av-llm-tiny"
NUM_FRAMES, NUM_SEGMENTS = 3, 2
BASE_MODELS = {
    "llm": "lmsys/vicuna-7b-v1.5",
    "vision_encoder": "openai/clip-vit-large-patch14",
    "audio_encoder": "laion/clap-htsat-unfused",
}
PROMPTS = ["What is happening in this video?", "<VIS> What is shown?", "<AUD> What is heard?"]
REFUSED_REPOS = ("user/av-llm-nan", "user/av-llm-nan-folder", "user/av-llm-wrong-ids", "user/av-llm-wrong-ids-processor")


def tiny_config(**overrides):
    return tiny_av_llm_config(num_frames=NUM_FRAMES, num_audio_segments=NUM_SEGMENTS, **overrides)


def tiny_model(seed: int = 0, **overrides) -> AvLlmForConditionalGeneration:
    torch.manual_seed(seed)
    return AvLlmForConditionalGeneration(tiny_config(**overrides)).eval()


def client_environment(server: LocalHubServer, tmp_path) -> dict:
    return {**os.environ, **server.client_environment(tmp_path / "hf_home")}


PUSH_LOAD_AND_REFUSE = """
    import json, sys, torch, transformers_av
    from pathlib import Path
    from safetensors.torch import save_file
    from transformers import AutoModelForMultimodalLM, AutoProcessor
    from transformers_av import AvLlmForConditionalGeneration
    from transformers_av.hub import UploadRefusedError, push_folder_to_hub
    from transformers_av.presets.tiny import tiny_av_llm_config

    folder, nan_folder, clip, out = map(Path, sys.argv[1:5])
    prompts, base_models = json.loads(sys.argv[5]), json.loads(sys.argv[6])
    model = AutoModelForMultimodalLM.from_pretrained(folder).eval()
    processor = AutoProcessor.from_pretrained(folder)

    refusals = {}
    def refused(repo_id, push):
        try:
            push()
        except UploadRefusedError as error:
            refusals[repo_id] = str(error)
        else:
            refusals[repo_id] = None

    broken = AutoModelForMultimodalLM.from_pretrained(folder)
    with torch.no_grad():
        broken.model.connector.audio_projection.weight[0, :2] = float("nan")
    refused("user/av-llm-nan", lambda: broken.push_to_hub("user/av-llm-nan", processor=processor))
    refused("user/av-llm-nan-folder", lambda: push_folder_to_hub(nan_folder, "user/av-llm-nan-folder"))
    swapped = AvLlmForConditionalGeneration(tiny_av_llm_config(
        num_frames=%(frames)d, num_audio_segments=%(segments)d, visual_modality_token_id=514, audio_modality_token_id=513))
    refused("user/av-llm-wrong-ids", lambda: swapped.push_to_hub("user/av-llm-wrong-ids", processor=processor))
    refused("user/av-llm-wrong-ids-processor",
            lambda: processor.push_to_hub("user/av-llm-wrong-ids-processor", config=swapped.config))

    info = model.push_to_hub("user/av-llm-tiny", processor=processor, base_models=base_models)
    loaded = AutoModelForMultimodalLM.from_pretrained("user/av-llm-tiny")
    hub_processor = AutoProcessor.from_pretrained("user/av-llm-tiny")
    save_file({k: v.contiguous() for k, v in loaded.state_dict().items()}, out / "loaded.safetensors")
    batch = hub_processor(text=prompts, videos=[str(clip)] * len(prompts))
    torch.save(dict(batch.items()), out / "processor.pt")
    (out / "result.json").write_text(json.dumps({
        "commit": info.oid, "refusals": refusals,
        "classes": [type(loaded).__name__, type(hub_processor).__name__],
    }))
""" % {"frames": NUM_FRAMES, "segments": NUM_SEGMENTS}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with LocalHubServer(tmp_path_factory.mktemp("hub")) as running:
        yield running


@pytest.fixture(scope="module")
def pushed(server, tmp_path_factory):
    """Refused pushes first (NaN weights, NaN folder, token ids that disagree), then the tiny model and its
    processor pushed in one commit and loaded back over HTTP by a client process."""
    tmp = tmp_path_factory.mktemp("pushed")
    model = tiny_model(0)
    processor = tiny_av_llm_processor(model.config)
    model.save_pretrained(tmp / "model")
    processor.save_pretrained(tmp / "model")
    nan_model = tiny_model(1)
    with torch.no_grad():
        next(nan_model.model.vision_encoder.parameters()).view(-1)[:3] = float("nan")
    nan_model.save_pretrained(tmp / "nan")
    clip = make_av_clip(tmp / "clip.mp4", seconds=2.0, fps=4, beep_at=[1.0], size=(32, 32)).path
    out = tmp / "out"
    out.mkdir()
    script = tmp / "client.py"
    script.write_text(textwrap.dedent(PUSH_LOAD_AND_REFUSE))
    result = subprocess.run(
        [sys.executable, str(script), tmp / "model", tmp / "nan", clip, out, json.dumps(PROMPTS), json.dumps(BASE_MODELS)],
        env=client_environment(server, tmp), cwd=tmp, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    return {"model": model, "processor": processor, "clip": clip, "out": out, "tmp": tmp,
            "result": json.loads((out / "result.json").read_text())}


def read_card(server, tmp_path) -> ModelCard:
    path = tmp_path / "README.md"
    path.write_bytes(server.read_file(REPO, "README.md"))
    return ModelCard.load(path)


def test_round_trip_through_the_auto_classes_is_bit_exact(server, pushed):
    assert pushed["result"]["classes"] == ["AvLlmForConditionalGeneration", "AvLlmProcessor"]
    loaded, expected = load_file(str(pushed["out"] / "loaded.safetensors")), pushed["model"].state_dict()
    assert loaded.keys() == expected.keys() and len(expected) > 100
    for name, tensor in expected.items():
        assert loaded[name].dtype == tensor.dtype and torch.equal(loaded[name], tensor), name
    assert server.commit_ids(REPO)[0] == pushed["result"]["commit"]
    files = server.list_files(REPO)
    for name in ("model.safetensors", "config.json", "generation_config.json", "README.md", "processor_config.json",
                 "tokenizer.json"):
        assert name in files, name
    assert json.loads(server.read_file(REPO, "config.json"))["model_type"] == "av_llm"
    assert server.read_file(REPO, "model.safetensors") == (pushed["tmp"] / "model" / "model.safetensors").read_bytes()


def test_processor_round_trip_gives_identical_encodings(pushed):
    remote = torch.load(pushed["out"] / "processor.pt")
    expected = pushed["processor"](text=PROMPTS, videos=[str(pushed["clip"])] * len(PROMPTS))
    assert remote.keys() == expected.keys()
    for key, value in expected.items():
        assert remote[key].dtype == value.dtype and torch.equal(remote[key], value), key
    # the encodings hold what the card describes: T frames, K segments, and the modality tokens of the prompts
    assert tuple(expected["pixel_values_videos"].shape[:2]) == (3, NUM_FRAMES)
    assert tuple(expected["audio_input_features"].shape[:2]) == (3, NUM_SEGMENTS)
    config = pushed["model"].config
    for row, token_id in zip(expected["input_ids"], (config.audio_visual_modality_token_id, config.visual_modality_token_id,
                                                     config.audio_modality_token_id)):
        assert token_id in row.tolist()


def test_model_card_is_rendered_from_the_av_llm_template(server, pushed, tmp_path):
    card = read_card(server, tmp_path)
    data, text = card.data, card.text
    assert data.library_name == "transformers" and data.pipeline_tag == "video-text-to-text"
    assert data.license == "apache-2.0"
    assert data.base_model == list(BASE_MODELS.values())
    assert "av-llm" in data.tags and "favor" not in data.tags and "video-salmonn" not in data.tags
    assert "is an **Audio-Visual LLM** (Shu et al., 2023)" in text
    assert "arXiv:2312.06720" in text and "FAVOR" not in text and "Whisper" not in text
    assert "| audio encoder (CLAP HTSAT) | [`laion/clap-htsat-unfused`]" in text
    # the paper's recipe
    assert "| learning rate | 2e-3 | 2e-5 |" in text and "AdamW, betas (0.9, 0.98)" in text
    assert "cosine, 3% warm-up" in text and "32 uniformly sampled frames at 224 px" in text

    # architecture numbers, from the configuration: T frames, P = (image / patch)^2 patches, K segments
    config = pushed["model"].config
    frames = config.num_frames
    patches = (config.vision_config.image_size // config.vision_config.patch_size) ** 2
    segments = config.num_audio_segments
    assert (frames, patches, segments) == (3, 4, 2)
    assert f"T = {frames} temporal tokens (one [CLS] per frame) + P = {patches} spatial tokens" in text
    assert f"the audio is cut into K = {segments} equal segments" in text
    assert (f"| media tokens per video | T + P + K | {frames + patches + segments} at the placeholder with `<AUD_VIS>` "
            f"({frames} + {patches} + {segments}); {frames + patches} with `<VIS>`; {segments} with `<AUD>` |") in text
    # one segment's last HTSAT hidden state: (32 channels, 1, 16) flattened -> 512 values
    assert "temporal 32 -> 64, spatial 32 -> 64, audio 512 -> 64; bias: True" in text

    # parameter counts, computed here from the modules (and the projector / head shapes by hand)
    model = pushed["model"]
    counts = {
        "visual encoder": sum(p.numel() for p in model.model.vision_encoder.parameters()),
        "audio encoder": sum(p.numel() for p in model.model.audio_encoder.parameters()),
        "projectors": 2 * (32 * 64 + 64) + (512 * 64 + 64),
        "LLM": sum(p.numel() for p in model.model.language_model.parameters()),
        "LM head": 516 * 64,
    }
    assert counts["projectors"] == sum(p.numel() for p in model.model.connector.parameters())
    total = sum(p.numel() for p in model.parameters())
    assert sum(counts.values()) == total
    table = "\n".join(["| part | parameters |", "|---|---:|"] + [f"| {k} | {v:,} |" for k, v in counts.items()]
                      + [f"| total | {total:,} |"])
    assert table in text


def test_model_card_usage_snippets_work_as_printed(server, pushed, tmp_path):
    """Both python blocks of the card (installed package; trust_remote_code without it) run as printed (the local
    endpoint through HF_ENDPOINT) and print the answer the pushed model gives here."""
    text = server.read_file(REPO, "README.md").decode()
    installed, remote = re.findall(r"```python\n(.*?)```", text, flags=re.DOTALL)
    assert "import transformers_av" in installed and "trust_remote_code=True" in remote
    assert 'AutoModelForMultimodalLM.from_pretrained("user/av-llm-tiny")' in installed
    assert 'AutoProcessor.from_pretrained("user/av-llm-tiny")' in installed
    (tmp_path / "video.mp4").write_bytes(pushed["clip"].read_bytes())
    (tmp_path / "installed.py").write_text(installed)
    (tmp_path / "remote.py").write_text('import sys\nsys.modules["transformers_av"] = None\n' + remote)
    env = {**client_environment(server, tmp_path), "HF_MODULES_CACHE": str(tmp_path / "modules")}
    env.pop("PYTHONPATH", None)
    runs = [subprocess.Popen([sys.executable, name], cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True) for name in ("installed.py", "remote.py")]
    outputs = [run.communicate(timeout=300) for run in runs]
    for run, (_, stderr) in zip(runs, outputs):
        assert run.returncode == 0, stderr[-4000:]
    model, processor = pushed["model"], pushed["processor"]
    inputs = processor(text="What is happening in this video?", videos=str(tmp_path / "video.mp4"))
    with torch.no_grad():
        output = model.generate(**inputs, max_new_tokens=32)
    expected = processor.batch_decode(output[:, inputs["input_ids"].shape[1]:], skip_special_tokens=True)[0]
    assert [stdout.rstrip("\n") for stdout, _ in outputs] == [expected, expected]


# -- refusals: nothing reaches the server --------------------------------------------------------------------------
def test_refused_uploads_create_nothing_on_the_server(server, pushed):
    refusals = pushed["result"]["refusals"]
    assert re.search(r"model\.connector\.audio_projection\.weight: 2 NaN, 0 inf of \d+ values", refusals["user/av-llm-nan"])
    assert re.search(r"model\.safetensors:model\.vision_encoder\.\S+: 3 NaN", refusals["user/av-llm-nan-folder"])
    for repo_id in ("user/av-llm-wrong-ids", "user/av-llm-wrong-ids-processor"):
        message = refusals[repo_id]
        assert "the processor does not match the model" in message
        assert "'<VIS>' has id 513 in the tokenizer but config.visual_modality_token_id is 514" in message
        assert "'<AUD>' has id 514 in the tokenizer but config.audio_modality_token_id is 513" in message
    assert sorted(refusals) == sorted(REFUSED_REPOS)
    for repo_id in REFUSED_REPOS:
        assert not server.hub.repo_exists("model", repo_id), repo_id
        assert not any(request.repo_id == repo_id for request in server.requests), repo_id
    assert server.hub.repo_exists("model", REPO)


class NoNetwork:
    def __init__(self):
        self.calls = []

    def __getattr__(self, name):
        self.calls.append(name)
        raise AssertionError(f"network call {name} after validation should have refused the upload")


@pytest.fixture
def no_network(monkeypatch):
    api = NoNetwork()
    monkeypatch.setattr(hub_push, "_api", lambda token: api)
    return api


def test_processor_settings_and_family_are_checked_against_the_config(no_network):
    model = tiny_model(0)
    config = model.config
    validate_processor_for_upload(tiny_av_llm_processor(config), config)  # the matching processor passes
    with pytest.raises(UploadRefusedError, match=r"processor\.num_frames=5 but config\.num_frames=3"):
        model.push_to_hub("user/broken", processor=tiny_av_llm_processor(config, num_frames=5))
    with pytest.raises(UploadRefusedError, match=r"processor\.num_patches=9 but config\.num_patches=4"):
        tiny_av_llm_processor(config, num_patches=9).push_to_hub("user/broken", config=config)
    with pytest.raises(UploadRefusedError, match=r"processor\.num_audio_segments=4 but config\.num_audio_segments=2"):
        hub_module.push_processor_to_hub(tiny_av_llm_processor(config, num_audio_segments=4), "user/broken",
                                         config=config)
    with pytest.raises(UploadRefusedError, match="the processor is a FavorProcessor but the Audio-Visual LLM model"):
        model.push_to_hub("user/broken", processor=tiny_processor())
    model.config.media_token_id = 10_000  # the configuration's own checks run too
    with pytest.raises(UploadRefusedError, match=r"media_token_id \(10000\) must be an id of the LLM vocabulary"):
        model.push_to_hub("user/broken")
    assert no_network.calls == []


def test_folder_validation_dispatches_on_the_saved_model_type(no_network, tmp_path):
    model = tiny_model(0)
    model.save_pretrained(tmp_path / "good")
    tiny_av_llm_processor(model.config).save_pretrained(tmp_path / "good")
    config = validate_folder_for_upload(tmp_path / "good")
    assert type(config).__name__ == "AvLlmConfig" and config.num_frames == NUM_FRAMES
    model.save_pretrained(tmp_path / "bad")
    tiny_av_llm_processor(model.config, num_frames=5).save_pretrained(tmp_path / "bad")
    with pytest.raises(UploadRefusedError, match=r"processor\.num_frames=5 but config\.num_frames=3"):
        push_folder_to_hub(tmp_path / "bad", "user/broken")
    assert no_network.calls == []


def test_card_roles_and_template_follow_the_family():
    config = tiny_config()
    config.text_config._name_or_path = "lmsys/vicuna-7b-v1.5"
    card = render_model_card(config, "org/av-llm-7b")
    assert card.data.base_model == "lmsys/vicuna-7b-v1.5"
    assert "is an **Audio-Visual LLM**" in card.text and "| language model | [`lmsys/vicuna-7b-v1.5`]" in card.text
    with pytest.raises(ValueError, match="base_models keys must be among"):
        render_model_card(config, "org/av-llm-7b", base_models={"speech_encoder": "openai/whisper-large-v2"})
    finetuned = render_model_card(config, "org/av-llm-avqa", finetuned_from="org/av-llm-7b")
    assert finetuned.data.base_model[0] == "org/av-llm-7b" and "fine-tuned Audio-Visual LLM" in finetuned.text
