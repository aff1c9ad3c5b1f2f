"""Fixtures of the Hub tests: one local Hub server (transformers_av.testing.hub_server) for the session, one push per
model family to it (the expensive part, shared by test_push.py and test_card.py), the `family` under test and a
stand-in for the Hub client that fails on any use."""

import json
from pathlib import Path

import pytest
from hub.helpers import AV_LLM, FAMILIES, FAVOR, HubFamily, run_client

from transformers_av.hub import push as hub_push
from transformers_av.synthetic.media import make_av_clip
from transformers_av.testing.hub_server import LocalHubServer

PUSH_CLIENT = Path(__file__).with_name("push_client.py")


@pytest.fixture(scope="session")
def server(tmp_path_factory):
    with LocalHubServer(tmp_path_factory.mktemp("hub")) as running:
        yield running


def push_through_a_client(server: LocalHubServer, tmp_path_factory, family: HubFamily, **also_saved) -> dict:
    """Save the family's tiny model (seed 0) with its processor, and the models `also_saved` by folder name, then
    let push_client.py push and load back over HTTP. Returns the local objects and what the client wrote."""
    staged = tmp_path_factory.mktemp(f"pushed_{family.name}")
    model = family.tiny_model(0)
    processor = family.processor(model.config)
    model.save_pretrained(staged / "model")
    processor.save_pretrained(staged / "model")
    for folder, other in also_saved.items():
        other.save_pretrained(staged / folder)
    clip = make_av_clip(staged / "clip.mp4", seconds=2.0, fps=4, beep_at=[1.0], size=(32, 32)).path
    out = staged / "out"
    out.mkdir()
    arguments = {"repo": family.repo, "base_models": family.base_models, "processor_inputs": family.processor_inputs(clip)}
    run_client(server, staged, PUSH_CLIENT.read_text(), family.name, staged, json.dumps(arguments))
    return {"model": model, "processor": processor, "clip": clip, "staged": staged, "out": out,
            **json.loads((out / "result.json").read_text())}


@pytest.fixture(scope="session")
def favor_pushed(server, tmp_path_factory):
    """Model A (+ processor and card) pushed to main, model B to the branch "experiment" then to main, a LoRA adapter
    to its own repository; everything loaded back over HTTP by the client. `main_model`: what main holds at the end."""
    model_b = FAVOR.tiny_model(1)
    return {**push_through_a_client(server, tmp_path_factory, FAVOR, b=model_b), "main_model": model_b}


@pytest.fixture(scope="session")
def av_llm_pushed(server, tmp_path_factory):
    """Refused pushes first (NaN weights, NaN folder, token ids that disagree), then the tiny model and its
    processor pushed in one commit and loaded back over HTTP by the client."""
    poisoned = AV_LLM.tiny_model(1)
    AV_LLM.poison(poisoned)
    pushed = push_through_a_client(server, tmp_path_factory, AV_LLM, nan=poisoned)
    return {**pushed, "main_model": pushed["model"]}


@pytest.fixture(params=list(FAMILIES))
def family(request) -> HubFamily:
    """The family under test (tests that parametrise expected values per family do it with `indirect=["family"]`)."""
    return FAMILIES[request.param]


@pytest.fixture
def pushed(family, request) -> dict:
    """The session's push of the family under test."""
    return request.getfixturevalue(f"{family.name}_pushed")


class NoNetwork:
    def __init__(self):
        self.calls = []

    def __getattr__(self, name):
        self.calls.append(name)
        raise AssertionError(f"network call {name} after validation should have refused the upload")


@pytest.fixture
def no_network(monkeypatch):
    """The Hub client of every upload replaced: a refusal must come before any use of it (`no_network.calls`)."""
    api = NoNetwork()
    monkeypatch.setattr(hub_push, "_api", lambda token: api)
    return api
