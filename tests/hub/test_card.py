"""Model cards (transformers_av.hub.card): the cards of the session's pushes (conftest.py: one per family, read from
the local Hub server), their usage snippets run as printed, and cards rendered alone by `render_model_card`."""

import re
import subprocess
import sys

import pytest
import torch
from hub.helpers import AV_LLM, FAVOR, client_environment, read_card
from huggingface_hub import ModelCard

from transformers_av.hub import render_model_card


@pytest.mark.parametrize("family, tag", [pytest.param("favor", "video-salmonn", id="favor"),
                                         pytest.param("av_llm", "av-llm", id="av_llm")], indirect=["family"])
def test_model_card_parses_with_valid_metadata(server, family, pushed, tag, tmp_path):
    card = read_card(server, family.repo, tmp_path, revision=pushed["commits"]["first"])
    data = card.data
    assert data.library_name == "transformers"
    assert data.pipeline_tag == "any-to-any"  # the pipeline that serves them (tests/test_pipelines.py)
    assert data.license == "apache-2.0"
    assert data.base_model == list(family.base_models.values())
    assert tag in data.tags
    total = sum(p.numel() for p in pushed["model"].parameters())
    assert f"| total | {total:,} |" in card.text


def test_favor_card_records_training_evaluation_architecture_and_branch(server, favor_pushed, tmp_path):
    card = read_card(server, FAVOR.repo, tmp_path, revision=favor_pushed["commits"]["first"])
    assert card.data.datasets == ["org/av-sync"]
    result = card.data.eval_results[0]
    assert (result.dataset_type, result.metric_type, result.metric_value, result.dataset_split) == ("org/av-sync", "accuracy", 0.75, "test")
    # the architecture table: 32 visual tokens per frame, two resolutions, 6 LLM tokens per second of video
    assert "| tokens per second of video |  | 6 (30 per 5 s window) |" in card.text
    assert "1 frame (0.5 s) x 3 queries, 10 frames (5 s) x 30 queries" in card.text
    assert "32 tokens per frame" in card.text
    assert "| learning_rate | 0.0001 |" in card.text and "| AV sync test | test | accuracy | 0.75 |" in card.text
    # the experiment branch's card points its snippet at that branch
    branch_card = ModelCard(server.read_file(FAVOR.repo, "README.md", revision="experiment").decode())
    assert 'from_pretrained("user/favor-tiny", revision="experiment")' in branch_card.text


def test_av_llm_card_is_rendered_from_the_av_llm_template(server, av_llm_pushed, tmp_path):
    card = read_card(server, AV_LLM.repo, tmp_path)
    data, text = card.data, card.text
    assert "favor" not in data.tags and "video-salmonn" not in data.tags
    assert "is an **Audio-Visual LLM** (Shu et al., 2023)" in text
    assert "arXiv:2312.06720" in text and "FAVOR" not in text and "Whisper" not in text
    assert "| audio encoder (CLAP HTSAT) | [`laion/clap-htsat-unfused`]" in text
    # the paper's recipe
    assert "| learning rate | 2e-3 | 2e-5 |" in text and "AdamW, betas (0.9, 0.98)" in text
    assert "cosine, 3% warm-up" in text and "32 uniformly sampled frames at 224 px" in text

    # architecture numbers, from the configuration: T frames, P = (image / patch)^2 patches, K segments
    config = av_llm_pushed["model"].config
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
    model = av_llm_pushed["model"]
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


def test_model_card_usage_snippets_work_as_printed(server, family, pushed, tmp_path):
    """Both python blocks of the card (installed package; trust_remote_code without it) run as printed (the local
    endpoint through HF_ENDPOINT) and print the answer that the model on main gives here."""
    card = server.read_file(family.repo, "README.md", revision=pushed["commits"]["first"]).decode()
    installed, remote = re.findall(r"```python\n(.*?)```", card, flags=re.DOTALL)
    assert "import transformers_av" in installed and "trust_remote_code=True" in remote
    assert f'AutoModelForMultimodalLM.from_pretrained("{family.repo}")' in installed
    assert f'AutoProcessor.from_pretrained("{family.repo}")' in installed
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
    model, processor = pushed["main_model"], pushed["processor"]  # FAVOR: main holds model B by now
    inputs = processor(text="What is happening in this video?", videos=str(tmp_path / "video.mp4"))
    with torch.no_grad():
        output = model.generate(**inputs, max_new_tokens=32)
    expected = processor.batch_decode(output[:, inputs["input_ids"].shape[1]:], skip_special_tokens=True)[0]
    assert [stdout.rstrip("\n") for stdout, _ in outputs] == [expected, expected]


# -- cards rendered alone -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("family, config_args, slug, name, intro", [
    pytest.param("favor", {"variant": "favor"}, "favor", "FAVOR", "is a **FAVOR** audio-visual language model", id="favor"),
    pytest.param("av_llm", {}, "av-llm", "Audio-Visual LLM", "is an **Audio-Visual LLM**", id="av_llm"),
], indirect=["family"])
def test_card_template_and_fine_tuned_base_follow_the_family(family, config_args, slug, name, intro):
    config = family.config(**config_args)
    config.text_config._name_or_path = "lmsys/vicuna-7b-v1.5"
    assert intro in render_model_card(config, f"org/{slug}-7b").text
    finetuned = render_model_card(config, f"org/{slug}-avqa", finetuned_from=f"org/{slug}-7b")
    assert finetuned.data.base_model[0] == f"org/{slug}-7b" and f"fine-tuned {name}" in finetuned.text


def test_card_templates_follow_the_architecture_and_recorded_sources(tmp_path):
    """FAVOR and video-SALMONN templates by architecture (the FAVOR one's opening: the test above); sub-models'
    recorded sources become `base_model` (Hub ids only: a local path is named in the text but kept out of the
    metadata)."""
    config = FAVOR.config("favor")
    config.text_config._name_or_path = "lmsys/vicuna-7b-v1.5"
    config.speech_config._name_or_path = "openai/whisper-large-v2"
    config.vision_config._name_or_path = str(tmp_path)  # a local folder
    card = render_model_card(config, "org/favor-7b", license="mit")
    card.save(tmp_path / "README.md")
    loaded = ModelCard.load(tmp_path / "README.md")
    assert loaded.data.base_model == ["lmsys/vicuna-7b-v1.5", "openai/whisper-large-v2"]
    assert loaded.data.license == "mit" and "favor" in loaded.data.tags
    assert "| audio-event encoder | none |" in loaded.text
    assert "| tokens per second of video |  | 6.4 (32 per 5 s window) |" in loaded.text
    assert f"`{tmp_path}` (local files)" in loaded.text
    salmonn = render_model_card(FAVOR.config("video_salmonn"), "org/video-salmonn-7b")
    assert "is a **video-SALMONN** audio-visual language model" in salmonn.text


def test_av_llm_card_roles_are_the_family_components():
    config = AV_LLM.config()
    config.text_config._name_or_path = "lmsys/vicuna-7b-v1.5"
    card = render_model_card(config, "org/av-llm-7b")
    assert card.data.base_model == "lmsys/vicuna-7b-v1.5"
    assert "| language model | [`lmsys/vicuna-7b-v1.5`]" in card.text
    with pytest.raises(ValueError, match="base_models keys must be among"):
        render_model_card(config, "org/av-llm-7b", base_models={"speech_encoder": "openai/whisper-large-v2"})
