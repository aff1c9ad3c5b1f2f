"""`transformers-av convert` from the files the authors released: a trainable-only delta plus the frozen parts."""

import json
import re
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForMultimodalLM, LlamaConfig, LlamaForCausalLM, WhisperConfig, WhisperModel

from transformers_av import FavorForConditionalGeneration
from transformers_av.cli import main
from transformers_av.conversion.favor import convert_official_state_dict, favor_config_from_official

FIXTURES = Path(__file__).parents[1] / "fixtures" / "official_tiny" / "video_salmonn"
LLM_PREFIX = "llama_model.base_model.model."


@pytest.fixture(scope="module")
def released_files(tmp_path_factory):
    """Split the official full state dict into the files of a real release."""
    root = tmp_path_factory.mktemp("release")
    meta = json.loads((FIXTURES / "config.json").read_text())
    full = torch.load(FIXTURES / "official_state_dict.pt", map_location="cpu", weights_only=True)

    whisper = WhisperModel(WhisperConfig(**{k: v for k, v in meta["modules"]["whisper"].items() if k in WhisperConfig().to_dict()}))
    encoder = {k[len("speech_encoder."):]: v for k, v in full.items() if k.startswith("speech_encoder.")}
    whisper.encoder.load_state_dict(encoder)
    whisper.save_pretrained(root / "whisper")

    beats = {k[len("beats."):]: v for k, v in full.items() if k.startswith("beats.")}
    torch.save({"cfg": meta["modules"]["beats"], "model": beats}, root / "BEATs.pt")
    visual = {k: v for k, v in full.items() if k.startswith(("visual_encoder.", "ln_vision.", "Qformer.", "query_tokens"))}
    visual["llm_proj.weight"] = torch.zeros(2, 2)  # InstructBLIP's own LLM projection: not used, must be skipped
    torch.save({"model": visual}, root / "instruct_blip_trimmed.pth")

    llama_args = {k: v for k, v in meta["modules"]["llama"].items() if k in LlamaConfig().to_dict()}
    llm = LlamaForCausalLM(LlamaConfig(**llama_args))
    base = {k[len(LLM_PREFIX):]: v for k, v in full.items() if k.startswith(LLM_PREFIX) and "lora_" not in k and "inv_freq" not in k}
    llm.load_state_dict(base)
    llm.save_pretrained(root / "vicuna")

    (root / "official_config.json").write_text(json.dumps(meta))
    return root, meta, full


def convert_cli(root, output, *extra):
    return main([
        "convert", "--delta", str(FIXTURES / "delta_checkpoint.pt"), "--whisper", str(root / "whisper"),
        "--beats", str(root / "BEATs.pt"), "--instructblip", str(root / "instruct_blip_trimmed.pth"),
        "--llm", str(root / "vicuna"), "--official-config", str(root / "official_config.json"),
        "--lora-alpha", "8", "--output", str(output), *extra,
    ])


def test_convert_from_released_parts_equals_full_state_dict(released_files, tmp_path):
    root, meta, full = released_files
    assert convert_cli(root, tmp_path / "converted") == 0
    loaded = AutoModelForMultimodalLM.from_pretrained(tmp_path / "converted")
    assert isinstance(loaded, FavorForConditionalGeneration)
    config = favor_config_from_official(meta)
    reference, _, _ = convert_official_state_dict(full, config, lora_alpha=8)
    state = loaded.state_dict()
    for key, value in reference.items():
        assert torch.equal(state[key], value), key
    assert loaded.generation_config.num_beams == 5 and loaded.generation_config.repetition_penalty == 1.5
    assert loaded.config.causal_attention == "future" and loaded.config.max_audio_chunks == 1


def test_keep_lora_writes_a_peft_adapter_equal_to_the_merged_model(released_files, tmp_path):
    from peft import PeftModel

    root, _, _ = released_files
    assert convert_cli(root, tmp_path / "merged") == 0
    assert convert_cli(root, tmp_path / "adapter", "--keep-lora") == 0
    merged = FavorForConditionalGeneration.from_pretrained(tmp_path / "merged").eval()
    ids = torch.tensor([[1, 394, 493, 356, 365, 495, 356, 502]])
    with torch.no_grad():
        expected = merged(input_ids=ids).logits
        # the adapter really changes the model (so the comparison below is not vacuous)
        without_adapter = FavorForConditionalGeneration.from_pretrained(tmp_path / "adapter").eval()(input_ids=ids).logits
        assert (without_adapter - expected).abs().max() > 1e-2  # measured 3.5: far above round-off
        base = FavorForConditionalGeneration.from_pretrained(tmp_path / "adapter").eval()
        with_adapter = PeftModel.from_pretrained(base, tmp_path / "adapter" / "official_lora").eval()
        actual = with_adapter(input_ids=ids).logits
    # same process: W + B A merged into one matmul vs the adapter's separate x A^T B^T path: fp32 summation order
    # on O(1) logits (measured 2.1e-6)
    assert (expected - actual).abs().max() < 1e-5


def test_unknown_keys_refuse_conversion_before_writing(released_files, tmp_path, capsys):
    root, _, _ = released_files
    delta = torch.load(FIXTURES / "delta_checkpoint.pt", map_location="cpu", weights_only=True)
    delta["mystery_module.weight"] = torch.zeros(3)
    torch.save(delta, tmp_path / "bad_delta.pt")
    status = main([
        "convert", "--delta", str(tmp_path / "bad_delta.pt"), "--whisper", str(root / "whisper"),
        "--beats", str(root / "BEATs.pt"), "--instructblip", str(root / "instruct_blip_trimmed.pth"),
        "--llm", str(root / "vicuna"), "--official-config", str(root / "official_config.json"),
        "--output", str(tmp_path / "out"),
    ])
    assert status == 2  # a user error: one line naming the key, no traceback
    assert re.search(r"^transformers-av convert: error: .*\n(  .*\n)*.*'mystery_module\.weight'", capsys.readouterr().err, re.M)
    assert not (tmp_path / "out").exists()


def test_unreadable_checkpoint_is_a_clear_error(tmp_path):
    from transformers_av.conversion.checkpoint import load_official_file

    (tmp_path / "broken.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="broken.pt"):
        load_official_file(tmp_path / "broken.pt")
    with pytest.raises(FileNotFoundError):
        load_official_file(tmp_path / "missing.pt")
