"""Plain helpers of the Hub tests (imported by name: `from hub.helpers import ...`; the fixtures are in conftest.py).

The two model families as these tests see them ([`HubFamily`]: the tiny model, its processor, what a push of it
carries), and the client side: huggingface_hub reads HF_ENDPOINT / HF_HUB_OFFLINE at import time and the test session
runs offline, so every client runs in a subprocess whose environment points at the local Hub server
(`LocalHubServer.client_environment`); the server runs in this process and the assertions read its storage and
request log directly."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from huggingface_hub import ModelCard
from safetensors.torch import load_file

from transformers_av import AvLlmForConditionalGeneration, FavorForConditionalGeneration
from transformers_av.presets.tiny import tiny_av_llm_config, tiny_av_llm_processor, tiny_favor_config, tiny_processor
from transformers_av.testing.hub_server import LocalHubServer

IMAGE = 28  # FAVOR: the tiny vision encoder's image size
# AV-LLM: T = 3 frames, P = 4 patches and K = 2 audio segments (three different numbers, so the card cannot mix them up)
NUM_FRAMES, NUM_SEGMENTS = 3, 2


def favor_config(variant: str = "video_salmonn", **overrides):
    return tiny_favor_config(variant, image_size=IMAGE, **overrides)


def av_llm_config(**overrides):
    return tiny_av_llm_config(num_frames=NUM_FRAMES, num_audio_segments=NUM_SEGMENTS, **overrides)


def poison_favor(model: torch.nn.Module) -> None:
    with torch.no_grad():
        model.model.connector.speech_projection.weight[0, :3] = float("nan")
        model.model.connector.speech_projection.weight[1, 0] = float("inf")


def poison_av_llm(model: torch.nn.Module) -> None:
    with torch.no_grad():
        model.model.connector.audio_projection.weight[0, :2] = float("nan")
        next(model.model.vision_encoder.parameters()).view(-1)[:3] = float("nan")


@dataclasses.dataclass(frozen=True)
class HubFamily:
    name: str  # the configuration's model_type, and the id of the family's parametrised tests
    repo: str  # where the session's push of the family goes (conftest.py: `favor_pushed`, `av_llm_pushed`)
    model_class: type
    config: Callable[..., Any]  # the tiny configuration, with overrides
    processor: Callable[..., Any]  # processor(config, **settings): the tiny processor of a configuration
    base_models: dict[str, str]  # the sub-models' sources given to the push (the card's `base_model`)
    prompts: list[str]
    media: Callable[[str], dict[str, list]]  # the processor's media arguments for `prompts`, given the clip's path
    poison: Callable[[torch.nn.Module], None]  # puts NaN (and inf) into the weights, in place

    def tiny_model(self, seed: int = 0, **overrides) -> torch.nn.Module:
        torch.manual_seed(seed)
        return self.model_class(self.config(**overrides)).eval()

    def processor_inputs(self, clip: str | os.PathLike) -> dict[str, list]:
        """What the pushed processor encodes, locally and loaded back from the Hub."""
        return {"text": self.prompts, **self.media(str(clip))}


FAVOR = HubFamily(
    name="favor", repo="user/favor-tiny", model_class=FavorForConditionalGeneration, config=favor_config,
    processor=tiny_processor,
    base_models={
        "llm": "lmsys/vicuna-7b-v1.5",
        "speech_encoder": "openai/whisper-large-v2",
        "audio_encoder": "org/beats-iter3-as2m",
        "vision_encoder": "Salesforce/instructblip-vicuna-7b",
    },
    prompts=["What is shown?", "What is said?"], media=lambda clip: {"videos": [clip, None], "audio": [None, clip]},
    poison=poison_favor,
)
AV_LLM = HubFamily(
    name="av_llm", repo="user/av-llm-tiny", model_class=AvLlmForConditionalGeneration, config=av_llm_config,
    processor=tiny_av_llm_processor,
    base_models={
        "llm": "lmsys/vicuna-7b-v1.5",
        "vision_encoder": "openai/clip-vit-large-patch14",
        "audio_encoder": "laion/clap-htsat-unfused",
    },
    prompts=["What is happening in this video?", "<VIS> What is shown?", "<AUD> What is heard?"],
    media=lambda clip: {"videos": [clip] * 3}, poison=poison_av_llm,
)
FAMILIES = {family.name: family for family in (FAVOR, AV_LLM)}


def client_environment(server: LocalHubServer, tmp_path: Path) -> dict[str, str]:
    """This process's environment with huggingface_hub pointed at `server` and a fresh HF_HOME under `tmp_path`."""
    return {**os.environ, **server.client_environment(tmp_path / "hf_home")}


def run_client(server: LocalHubServer, tmp_path: Path, script: str, *args) -> subprocess.CompletedProcess:
    """Run the python source `script` in a fresh interpreter whose huggingface_hub talks to `server`; it must
    succeed."""
    path = tmp_path / f"client_{abs(hash(script)) % 10**8}.py"
    path.write_text(textwrap.dedent(script))
    result = subprocess.run([sys.executable, str(path), *map(str, args)], env=client_environment(server, tmp_path),
                            cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-4000:]
    return result


def assert_state_dict_equal(path: Path, model: torch.nn.Module) -> None:
    """The safetensors file at `path` holds exactly `model`'s state dict: the same names, dtypes and values."""
    loaded, expected = load_file(str(path)), model.state_dict()
    assert loaded.keys() == expected.keys()
    for name, tensor in expected.items():
        assert loaded[name].dtype == tensor.dtype and torch.equal(loaded[name], tensor), name


def read_card(server: LocalHubServer, repo: str, tmp_path: Path, revision: str = "main") -> ModelCard:
    """The README.md of `repo` at `revision`, parsed as a model card (from a file, as the Hub's tools read it)."""
    path = tmp_path / "README.md"
    path.write_bytes(server.read_file(repo, "README.md", revision=revision))
    return ModelCard.load(path)
