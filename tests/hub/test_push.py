"""Pushing to the Hub and loading back (transformers_av.hub.push) through a local Hub-compatible server
(transformers_av.testing.hub_server) on 127.0.0.1.

Every client runs in a subprocess whose environment points at the server (hub/helpers.py); the server runs in this
process and the assertions read its storage directly. The session's push of each family is conftest.py's
`favor_pushed` / `av_llm_pushed`; `pushed` is the one of the `family` under test."""

import json
import subprocess
import sys

import pytest
import torch
from hub.helpers import (
    AV_LLM,
    FAVOR,
    NUM_FRAMES,
    NUM_SEGMENTS,
    assert_state_dict_equal,
    client_environment,
    read_card,
    run_client,
)
from huggingface_hub import ModelCard
from safetensors.torch import load_file

from transformers_av.hub import folder_fingerprint
from transformers_av.testing.hub_server import LocalHubServer


@pytest.mark.parametrize("family, classes, files", [
    pytest.param("favor", ["FavorForConditionalGeneration", "FavorProcessor"],
                 ("model.safetensors", "config.json", "README.md", "processor_config.json", "tokenizer.json",
                  "qformer_tokenizer/tokenizer.json", "modeling_favor.py", "processing_favor.py", "video.py"), id="favor"),
    pytest.param("av_llm", ["AvLlmForConditionalGeneration", "AvLlmProcessor"],
                 ("model.safetensors", "config.json", "generation_config.json", "README.md", "processor_config.json",
                  "tokenizer.json"), id="av_llm"),
], indirect=["family"])
def test_round_trip_through_the_auto_classes_is_bit_exact(server, family, pushed, classes, files):
    assert pushed["classes"] == classes
    assert len(pushed["model"].state_dict()) > 100
    assert_state_dict_equal(pushed["out"] / "main.safetensors", pushed["model"])
    first = pushed["commits"]["first"]
    assert server.commit_ids(family.repo)[0] == pushed["commits"]["main"]
    pushed_files = server.list_files(family.repo, revision=first)
    for name in files:
        assert name in pushed_files, name
    assert json.loads(server.read_file(family.repo, "config.json", revision=first))["model_type"] == family.name
    local = pushed["staged"] / "model" / "model.safetensors"
    assert server.read_file(family.repo, "model.safetensors", revision=first) == local.read_bytes()


def test_processor_round_trip_gives_identical_encodings(family, pushed):
    remote = torch.load(pushed["out"] / "processor.pt")
    expected = pushed["processor"](**family.processor_inputs(pushed["clip"]))
    assert remote.keys() == expected.keys()
    for key, value in expected.items():
        assert remote[key].dtype == value.dtype and torch.equal(remote[key], value), key


def test_av_llm_encodings_hold_frames_segments_and_modality_tokens(av_llm_pushed):
    # the encodings hold what the card describes: T frames, K segments, and the modality tokens of the prompts
    expected = av_llm_pushed["processor"](**AV_LLM.processor_inputs(av_llm_pushed["clip"]))
    assert tuple(expected["pixel_values_videos"].shape[:2]) == (3, NUM_FRAMES)
    assert tuple(expected["audio_input_features"].shape[:2]) == (3, NUM_SEGMENTS)
    config = av_llm_pushed["model"].config
    for row, token_id in zip(expected["input_ids"], (config.audio_visual_modality_token_id, config.visual_modality_token_id,
                                                     config.audio_modality_token_id)):
        assert token_id in row.tolist()


def test_favor_revisions_and_base_model_class_load_back_bit_exact(server, favor_pushed):
    out, a, b = favor_pushed["out"], favor_pushed["model"], favor_pushed["main_model"]
    assert_state_dict_equal(out / "experiment.safetensors", b)
    assert_state_dict_equal(out / "pinned.safetensors", a)  # the first commit, after main moved on
    assert_state_dict_equal(out / "main_after.safetensors", b)
    base = load_file(str(out / "base_model.safetensors"))  # AutoModel -> FavorModel: the same weights, no head
    assert base.keys() == {k[len("model."):] for k in a.state_dict() if k.startswith("model.")}
    assert all(torch.equal(base[k], a.state_dict()[f"model.{k}"]) for k in base)

    commits = favor_pushed["commits"]
    assert server.commit_ids(FAVOR.repo)[:2] == [commits["third"], commits["first"]]
    assert server.commit_ids(FAVOR.repo, revision="experiment")[0] == commits["second"]
    local = favor_pushed["staged"] / "b" / "model.safetensors"
    assert server.read_file(FAVOR.repo, "model.safetensors", revision="experiment") == local.read_bytes()


def test_adapter_round_trip(server, favor_pushed):
    out = favor_pushed["out"]
    pushed_adapter, loaded = load_file(str(out / "adapter_pushed.safetensors")), load_file(str(out / "adapter_loaded.safetensors"))
    assert pushed_adapter.keys() == loaded.keys()
    assert any("lora_B" in k for k in loaded) and any("connector" in k for k in loaded)
    for name, tensor in pushed_adapter.items():
        assert torch.equal(loaded[name], tensor), name
    assert float(max(t.abs().max() for k, t in loaded.items() if "lora_B" in k)) > 0
    config = json.loads(server.read_file("user/favor-tiny-lora", "adapter_config.json"))
    assert config["base_model_name_or_path"] == FAVOR.repo
    card = ModelCard(server.read_file("user/favor-tiny-lora", "README.md").decode())
    assert card.data.library_name == "peft" and card.data.base_model == FAVOR.repo
    assert "PeftModel.from_pretrained(base, \"user/favor-tiny-lora\")" in card.text


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
    model = FAVOR.tiny_model(0)
    model.save_pretrained(tmp_path / "checkpoint")
    FAVOR.processor(model.config).save_pretrained(tmp_path / "checkpoint")
    broken = FAVOR.tiny_model(1)
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


def test_training_cli_pushes_the_final_model_with_its_training_details(server, tmp_path):
    # `transformers-av train ... --hub-model-id`: the final model and processor reach the Hub with a card that records
    # the training data and hyper-parameters; the pushed weights are the ones written to final/
    output = tmp_path / "run"
    command = [
        sys.executable, "-m", "transformers_av.cli", "train", "--model", "tiny-favor", "--train-data", "synthetic:sync",
        "--synthetic-clips", "2", "--max-steps", "1", "--learning-rate", "3e-4", "--output-dir", str(output),
        "--disable-tqdm", "--hub-model-id", "user/favor-finetuned",
    ]
    result = subprocess.run(command, env=client_environment(server, tmp_path), cwd=tmp_path, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-4000:]
    assert "pushed" in result.stdout

    pushed_weights = server.read_file("user/favor-finetuned", "model.safetensors")
    assert pushed_weights == (output / "final" / "model.safetensors").read_bytes()
    assert server.read_file("user/favor-finetuned", "processor_config.json")
    card = read_card(server, "user/favor-finetuned", tmp_path)
    assert card.data.library_name == "transformers"
    assert "learning_rate" in card.text and "0.0003" in card.text
    assert "synthetic audio-visual sync task" in card.text
