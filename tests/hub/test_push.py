"""Sharing on the Hub through a local Hub-compatible server (transformers_av.testing.hub_server) on 127.0.0.1.

huggingface_hub reads HF_ENDPOINT / HF_HUB_OFFLINE at import time and the test session runs offline, so every client
runs in a subprocess whose environment points at the server (`LocalHubServer.client_environment`); the server runs
in this process and the assertions read its storage directly."""

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

from transformers_av import FavorForConditionalGeneration
from transformers_av.hub import push as hub_push
from transformers_av.hub import UploadRefusedError, folder_fingerprint, push_folder_to_hub, push_to_hub
from transformers_av.presets.tiny import tiny_favor_config
from transformers_av.testing.hub_server import LocalHubServer
from transformers_av.synthetic.media import make_av_clip
from transformers_av.presets.tiny import tiny_processor

IMAGE = 28
REPO = "user/favor-tiny"
BASE_MODELS = {
    "llm": "lmsys/vicuna-7b-v1.5",
    "speech_encoder": "openai/whisper-large-v2",
    "audio_encoder": "org/beats-iter3-as2m",
    "vision_encoder": "Salesforce/instructblip-vicuna-7b",
}
PROMPTS = ["What is shown?", "What is said?"]


def tiny_model(seed: int) -> FavorForConditionalGeneration:
    torch.manual_seed(seed)
    return FavorForConditionalGeneration(tiny_favor_config("video_salmonn", image_size=IMAGE)).eval()


def run_client(server: LocalHubServer, tmp_path, script: str, *args, hf_home=None, cwd=None, check=True):
    """Run `script` in a fresh interpreter whose huggingface_hub talks to `server`."""
    path = tmp_path / f"client_{abs(hash(script)) % 10**8}.py"
    path.write_text(textwrap.dedent(script))
    env = {**os.environ, **server.client_environment(hf_home or tmp_path / "hf_home")}
    result = subprocess.run([sys.executable, str(path), *map(str, args)], env=env, cwd=cwd or tmp_path,
                            capture_output=True, text=True, timeout=300)
    if check:
        assert result.returncode == 0, result.stderr[-4000:]
    return result


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with LocalHubServer(tmp_path_factory.mktemp("hub")) as running:
        yield running


PUSH_AND_LOAD = """
    import json, sys, torch, transformers_av
    from pathlib import Path
    from peft import PeftModel, get_peft_model_state_dict
    from safetensors.torch import save_file
    from transformers import AutoModel, AutoModelForMultimodalLM, AutoProcessor
    from transformers_av.hub import EvaluationResult, TrainingDetails, push_to_hub
    from transformers_av.training import apply_lora

    a, b, proc, clip, out = map(Path, sys.argv[1:6])
    model_a = AutoModelForMultimodalLM.from_pretrained(a).eval()
    model_b = AutoModelForMultimodalLM.from_pretrained(b).eval()
    processor = AutoProcessor.from_pretrained(proc)
    first = model_a.push_to_hub(
        "user/favor-tiny", processor=processor, base_models=json.loads(sys.argv[6]),
        training=TrainingDetails(datasets=["org/av-sync"], hyperparameters={"learning_rate": 1e-4, "num_train_epochs": 2}),
        eval_results=[EvaluationResult("AV sync test", "org/av-sync", "accuracy", 0.75, split="test")],
    )
    second = model_b.push_to_hub("user/favor-tiny", revision="experiment", commit_message="model B")

    def dump(model, name):
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, out / f"{name}.safetensors")

    dump(AutoModelForMultimodalLM.from_pretrained("user/favor-tiny"), "main")
    dump(AutoModelForMultimodalLM.from_pretrained("user/favor-tiny", revision="experiment"), "experiment")
    dump(AutoModel.from_pretrained("user/favor-tiny"), "base_model")
    hub_processor = AutoProcessor.from_pretrained("user/favor-tiny")
    batch = hub_processor(text=%(prompts)r, videos=[str(clip), None], audio=[None, str(clip)])
    torch.save(dict(batch.items()), out / "processor.pt")

    # main moves on; the first commit stays loadable by its id (fresh cache: the files come over HTTP again)
    third = model_b.push_to_hub("user/favor-tiny", commit_message="model B on main")
    dump(AutoModelForMultimodalLM.from_pretrained("user/favor-tiny", revision=first.oid, cache_dir=out / "fresh"), "pinned")
    dump(AutoModelForMultimodalLM.from_pretrained("user/favor-tiny", cache_dir=out / "fresh"), "main_after")

    # LoRA run: adapter + trained connector copy, loaded back on top of the Hub base model at the first commit
    torch.manual_seed(3)
    lora = apply_lora(AutoModelForMultimodalLM.from_pretrained(a), r=4, alpha=8)
    with torch.no_grad():
        for name, parameter in lora.named_parameters():
            if "lora_B" in name:
                parameter.normal_()
    push_to_hub(lora, "user/favor-tiny-lora", finetuned_from="user/favor-tiny")  # PEFT's own push has no card
    save_file({k: v.contiguous() for k, v in get_peft_model_state_dict(lora).items()}, out / "adapter_pushed.safetensors")
    base = AutoModelForMultimodalLM.from_pretrained("user/favor-tiny", revision=first.oid)
    loaded = PeftModel.from_pretrained(base, "user/favor-tiny-lora")
    save_file({k: v.contiguous() for k, v in get_peft_model_state_dict(loaded).items()}, out / "adapter_loaded.safetensors")
    (out / "commits.json").write_text(json.dumps({"first": first.oid, "second": second.oid, "third": third.oid}))
""" % {"prompts": PROMPTS}


@pytest.fixture(scope="module")
def pushed(server, tmp_path_factory):
    """Model A (+ processor and card) pushed to main, model B to the branch "experiment" then to main, a LoRA adapter
    to its own repository; everything loaded back over HTTP by the client."""
    tmp = tmp_path_factory.mktemp("pushed")
    model_a, model_b = tiny_model(0), tiny_model(1)
    processor = tiny_processor(model_a.config)
    model_a.save_pretrained(tmp / "a")
    model_b.save_pretrained(tmp / "b")
    processor.save_pretrained(tmp / "proc")
    clip = make_av_clip(tmp / "clip.mp4", seconds=2.0, fps=4, beep_at=[1.0], size=(32, 32)).path
    out = tmp / "out"
    out.mkdir()
    run_client(server, tmp, PUSH_AND_LOAD, tmp / "a", tmp / "b", tmp / "proc", clip, out, json.dumps(BASE_MODELS))
    return {"a": model_a, "b": model_b, "processor": processor, "clip": clip, "out": out, "tmp": tmp,
            "commits": json.loads((out / "commits.json").read_text())}


def assert_state_dict_equal(path, model):
    loaded, expected = load_file(str(path)), model.state_dict()
    assert loaded.keys() == expected.keys()
    for name, tensor in expected.items():
        assert torch.equal(loaded[name], tensor), name


def test_round_trip_is_bit_exact_with_revisions(server, pushed):
    out, a, b = pushed["out"], pushed["a"], pushed["b"]
    assert_state_dict_equal(out / "main.safetensors", a)
    assert_state_dict_equal(out / "experiment.safetensors", b)
    assert_state_dict_equal(out / "pinned.safetensors", a)  # the first commit, after main moved on
    assert_state_dict_equal(out / "main_after.safetensors", b)
    base = load_file(str(out / "base_model.safetensors"))  # AutoModel -> FavorModel: the same weights, no head
    assert base.keys() == {k[len("model."):] for k in a.state_dict() if k.startswith("model.")}
    assert all(torch.equal(base[k], a.state_dict()[f"model.{k}"]) for k in base)

    commits = pushed["commits"]
    assert server.commit_ids(REPO)[:2] == [commits["third"], commits["first"]]
    assert server.commit_ids(REPO, revision="experiment")[0] == commits["second"]
    files = server.list_files(REPO, revision=commits["first"])
    for name in ("model.safetensors", "config.json", "README.md", "processor_config.json", "tokenizer.json",
                 "qformer_tokenizer/tokenizer.json", "modeling_favor.py", "processing_favor.py", "video.py"):
        assert name in files, name
    assert server.read_file(REPO, "model.safetensors", revision="experiment") == (pushed["tmp"] / "b" / "model.safetensors").read_bytes()


def test_processor_round_trip_gives_identical_outputs(pushed):
    remote = torch.load(pushed["out"] / "processor.pt")
    clip = str(pushed["clip"])
    expected = pushed["processor"](text=PROMPTS, videos=[clip, None], audio=[None, clip])
    assert remote.keys() == expected.keys()
    for key, value in expected.items():
        assert remote[key].dtype == value.dtype and torch.equal(remote[key], value), key


def test_adapter_round_trip(server, pushed):
    out = pushed["out"]
    pushed_adapter, loaded = load_file(str(out / "adapter_pushed.safetensors")), load_file(str(out / "adapter_loaded.safetensors"))
    assert pushed_adapter.keys() == loaded.keys()
    assert any("lora_B" in k for k in loaded) and any("connector" in k for k in loaded)
    for name, tensor in pushed_adapter.items():
        assert torch.equal(loaded[name], tensor), name
    assert float(max(t.abs().max() for k, t in loaded.items() if "lora_B" in k)) > 0
    config = json.loads(server.read_file("user/favor-tiny-lora", "adapter_config.json"))
    assert config["base_model_name_or_path"] == REPO
    card = ModelCard(server.read_file("user/favor-tiny-lora", "README.md").decode())
    assert card.data.library_name == "peft" and card.data.base_model == REPO
    assert "PeftModel.from_pretrained(base, \"user/favor-tiny-lora\")" in card.text


def test_model_card_parses_with_valid_metadata(server, pushed, tmp_path):
    path = tmp_path / "README.md"
    path.write_bytes(server.read_file(REPO, "README.md", revision=pushed["commits"]["first"]))
    card = ModelCard.load(path)
    data = card.data
    assert data.library_name == "transformers"
    assert data.pipeline_tag == "video-text-to-text"
    assert data.license == "apache-2.0"
    assert data.base_model == list(BASE_MODELS.values())
    assert data.datasets == ["org/av-sync"]
    assert "video-salmonn" in data.tags
    result = data.eval_results[0]
    assert (result.dataset_type, result.metric_type, result.metric_value, result.dataset_split) == ("org/av-sync", "accuracy", 0.75, "test")
    # the architecture table: 32 visual tokens per frame, two resolutions, 6 LLM tokens per second of video
    assert "| tokens per second of video |  | 6 (30 per 5 s window) |" in card.text
    assert "1 frame (0.5 s) x 3 queries, 10 frames (5 s) x 30 queries" in card.text
    assert "32 tokens per frame" in card.text
    assert "| learning_rate | 0.0001 |" in card.text and "| AV sync test | test | accuracy | 0.75 |" in card.text
    total = sum(p.numel() for p in pushed["a"].parameters())
    assert f"| total | {total:,} |" in card.text
    # the experiment branch's card points its snippet at that branch
    branch_card = ModelCard(server.read_file(REPO, "README.md", revision="experiment").decode())
    assert 'from_pretrained("user/favor-tiny", revision="experiment")' in branch_card.text


def test_model_card_usage_snippets_work_as_printed(server, pushed, tmp_path):
    """Both snippets of the card (installed package; trust_remote_code without it) run as printed and print the
    answer the model gives here."""
    card = server.read_file(REPO, "README.md", revision=pushed["commits"]["first"]).decode()
    installed, remote = re.findall(r"```python\n(.*?)```", card, flags=re.DOTALL)
    assert "trust_remote_code=True" in remote and "import transformers_av" in installed
    (tmp_path / "video.mp4").write_bytes(pushed["clip"].read_bytes())
    (tmp_path / "installed.py").write_text(installed)
    (tmp_path / "remote.py").write_text('import sys\nsys.modules["transformers_av"] = None\n' + remote)
    env = {**os.environ, **server.client_environment(tmp_path / "hf_home"), "HF_MODULES_CACHE": str(tmp_path / "modules")}
    env.pop("PYTHONPATH", None)
    runs = [subprocess.Popen([sys.executable, name], cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True) for name in ("installed.py", "remote.py")]
    outputs = [run.communicate(timeout=300) for run in runs]
    for run, (stdout, stderr) in zip(runs, outputs):
        assert run.returncode == 0, stderr[-4000:]
    model, processor = pushed["b"], pushed["processor"]  # main holds model B now
    inputs = processor(text="What is happening in this video?", videos=str(tmp_path / "video.mp4"))
    with torch.no_grad():
        output = model.generate(**inputs, max_new_tokens=32)
    expected = processor.batch_decode(output[:, inputs["input_ids"].shape[1]:], skip_special_tokens=True)[0]
    assert outputs[0][0].rstrip("\n") == expected
    assert outputs[1][0].rstrip("\n") == expected


# -- refusals: nothing is sent ------------------------------------------------------------------------------------------
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


def test_nan_weights_are_refused_before_anything_is_sent(no_network, tmp_path):
    model = tiny_model(0)
    with torch.no_grad():
        model.model.connector.speech_projection.weight[0, :3] = float("nan")
        model.model.connector.speech_projection.weight[1, 0] = float("inf")
    with pytest.raises(UploadRefusedError, match=r"model\.connector\.speech_projection\.weight: 3 NaN, 1 inf of"):
        model.push_to_hub("user/broken")
    model.save_pretrained(tmp_path / "broken")
    with pytest.raises(UploadRefusedError, match=r"model\.safetensors:model\.connector\.speech_projection\.weight: 3 NaN"):
        push_folder_to_hub(tmp_path / "broken", "user/broken")
    assert no_network.calls == []


def test_inconsistent_configs_are_refused_before_anything_is_sent(no_network):
    model = tiny_model(0)
    model.config.audio_visual_token_id = 10_000
    with pytest.raises(UploadRefusedError, match=r"audio_visual_token_id \(10000\) must be an id of the LLM vocabulary"):
        push_to_hub(model, "user/broken")
    model = tiny_model(0)
    model.config.resolutions = [[1, 3], [10, 31]]
    with pytest.raises(UploadRefusedError, match="same number of tokens"):
        model.push_to_hub("user/broken")
    model = tiny_model(0)
    model.config.text_config.vocab_size = 600  # the embeddings were not resized
    with pytest.raises(UploadRefusedError, match=r"model\.language_model\.embed_tokens\.weight: weights \(513, 64\) but the configuration gives \(600, 64\)"):
        model.push_to_hub("user/broken")
    model = tiny_model(0)
    processor = tiny_processor(tiny_favor_config("favor", image_size=IMAGE))
    with pytest.raises(UploadRefusedError, match=r"processor\.resolutions=\[\[10, 32\]\] but config\.resolutions=\[\[1, 3\], \[10, 30\]\]"):
        model.push_to_hub("user/broken", processor=processor)
    assert no_network.calls == []


# -- an interrupted upload ----------------------------------------------------------------------------------------------
INTERRUPTED = """
    import sys
    from transformers_av.hub import UploadRefusedError, push_folder_to_hub

    folder, broken = sys.argv[1], sys.argv[2]
    try:
        push_folder_to_hub(broken, "user/nan-model")
    except UploadRefusedError as error:
        print("refused:", error)
    try:
        push_folder_to_hub(folder, "user/favor-retry")
    except Exception as error:  # the server died during the commit
        print("interrupted:", type(error).__name__)
    else:
        raise SystemExit("the upload should have been interrupted")
"""

RETRY = """
    import sys
    from safetensors.torch import save_file
    from transformers import AutoModelForMultimodalLM
    from transformers_av.hub import push_folder_to_hub

    folder, out = sys.argv[1], sys.argv[2]
    info = push_folder_to_hub(folder, "user/favor-retry")
    model = AutoModelForMultimodalLM.from_pretrained("user/favor-retry")
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, out)
    print(info.oid)
"""


def test_interrupted_upload_leaves_the_folder_untouched_and_can_be_retried(tmp_path):
    model = tiny_model(0)
    model.save_pretrained(tmp_path / "checkpoint")
    tiny_processor(model.config).save_pretrained(tmp_path / "checkpoint")
    broken = tiny_model(1)
    with torch.no_grad():
        broken.model.connector.speech_projection.weight[0, 0] = float("nan")
    broken.save_pretrained(tmp_path / "broken")
    before = folder_fingerprint(tmp_path / "checkpoint")

    with LocalHubServer(tmp_path / "hub") as server:
        server.kill_on("commit")
        result = run_client(server, tmp_path, INTERRUPTED, tmp_path / "checkpoint", tmp_path / "broken")
        assert "refused:" in result.stdout and "NaN" in result.stdout
        assert "interrupted:" in result.stdout
        assert not server.running
        # the refused push sent nothing: the only repository created is the good one
        assert [r.kind for r in server.requests].count("create_repo") == 1
        assert not any(r.repo_id == "user/nan-model" for r in server.requests)
        # nothing was committed (the commit is atomic) and the local folder is untouched
        assert server.list_files("user/favor-retry") == [".gitattributes"]
        assert folder_fingerprint(tmp_path / "checkpoint") == before

        server.start()  # back on the same port and storage
        seen = len(server.requests)
        result = run_client(server, tmp_path, RETRY, tmp_path / "checkpoint", tmp_path / "retry.safetensors")
        retry_kinds = [r.kind for r in server.requests[seen:]]
        assert "commit" in retry_kinds and "lfs_upload" not in retry_kinds  # the weights had already arrived
        assert server.commit_ids("user/favor-retry")[0] == result.stdout.split()[-1]
        assert "README.md" in server.list_files("user/favor-retry")
    assert_state_dict_equal(tmp_path / "retry.safetensors", model)
    assert folder_fingerprint(tmp_path / "checkpoint") == before


def test_card_templates_follow_the_architecture_and_recorded_sources(tmp_path):
    """FAVOR and video-SALMONN templates by architecture; sub-models' recorded sources become `base_model` (Hub ids
    only: a local path is named in the text but kept out of the metadata)."""
    from transformers_av.hub import render_model_card

    config = tiny_favor_config("favor", image_size=IMAGE)
    config.text_config._name_or_path = "lmsys/vicuna-7b-v1.5"
    config.speech_config._name_or_path = "openai/whisper-large-v2"
    config.vision_config._name_or_path = str(tmp_path)  # a local folder
    card = render_model_card(config, "org/favor-7b", license="mit")
    card.save(tmp_path / "README.md")
    loaded = ModelCard.load(tmp_path / "README.md")
    assert loaded.data.base_model == ["lmsys/vicuna-7b-v1.5", "openai/whisper-large-v2"]
    assert loaded.data.license == "mit" and "favor" in loaded.data.tags
    assert "is a **FAVOR** audio-visual language model" in loaded.text
    assert "| audio-event encoder | none |" in loaded.text
    assert "| tokens per second of video |  | 6.4 (32 per 5 s window) |" in loaded.text
    assert f"`{tmp_path}` (local files)" in loaded.text
    salmonn = render_model_card(tiny_favor_config("video_salmonn", image_size=IMAGE), "org/video-salmonn-7b")
    assert "is a **video-SALMONN** audio-visual language model" in salmonn.text
    finetuned = render_model_card(config, "org/favor-avqa", finetuned_from="org/favor-7b")
    assert finetuned.data.base_model[0] == "org/favor-7b" and "fine-tuned FAVOR" in finetuned.text


def test_training_cli_pushes_the_final_model_with_its_training_details(server, tmp_path):
    # `transformers-av train ... --hub-model-id`: the final model and processor reach the Hub with a card that records
    # the training data and hyper-parameters; the pushed weights are the ones written to final/
    output = tmp_path / "run"
    command = [
        sys.executable, "-m", "transformers_av.cli", "train", "--model", "tiny-favor", "--train-data", "synthetic:sync",
        "--synthetic-clips", "2", "--max-steps", "1", "--learning-rate", "3e-4", "--output-dir", str(output),
        "--disable-tqdm", "--hub-model-id", "user/favor-finetuned",
    ]
    env = {**os.environ, **server.client_environment(tmp_path / "hf_home")}
    result = subprocess.run(command, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-4000:]
    assert "pushed" in result.stdout

    pushed_weights = server.read_file("user/favor-finetuned", "model.safetensors")
    assert pushed_weights == (output / "final" / "model.safetensors").read_bytes()
    assert server.read_file("user/favor-finetuned", "processor_config.json")
    card_path = tmp_path / "README.md"
    card_path.write_bytes(server.read_file("user/favor-finetuned", "README.md"))
    card = ModelCard.load(card_path)
    assert card.data.library_name == "transformers"
    assert "learning_rate" in card.text and "0.0003" in card.text
    assert "synthetic audio-visual sync task" in card.text
