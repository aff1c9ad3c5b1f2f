"""FAVOR's storytelling set (FAVOR §4.3, Appendix C, Table 7): the Table 7 prompt sent verbatim through the
evaluation's OpenAI-compatible backend (a local server started here), the rows written in the training format, a
rerun that continues, and the fine-tuning recipe."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from transformers_av.cli import main
from transformers_av.presets.paper import TRAINING_RECIPES
from transformers_av.training import load_av_dataset, load_train_settings
from transformers_av.training.storytelling import STORY_PROMPT, STORY_QUESTION, make_storytelling_set, story_prompt


class _StoryServer(BaseHTTPRequestHandler):
    prompts: list[str] = []

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        prompt = body["messages"][0]["content"]
        type(self).prompts.append(prompt)
        story = f"Once upon a time (story {len(type(self).prompts)}), {body['max_tokens']} tokens at most."
        payload = json.dumps({"choices": [{"message": {"content": story}}]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args):
        pass


@pytest.fixture()
def server():
    _StoryServer.prompts = []
    httpd = HTTPServer(("127.0.0.1", 0), _StoryServer)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/v1"
    httpd.shutdown()


def _manifest(tmp_path):
    lines = [
        {"video": "ego4d/a.mp4", "video_description": "A person chops onions in a kitchen.",
         "audio": "audiocaps/dog.wav", "audio_caption": "A dog barks while birds chirp."},
        {"video": "ego4d/b.mp4", "video_description": "Someone rides a bicycle down a hill",
         "audio": "/data/librispeech/84-1.flac", "transcript": "GO DO YOU HEAR"},
        {"video": "ego4d/c.mp4", "video_description": "A cat sleeps on a sofa.",
         "audio": "audiocaps/rain.wav", "audio_caption": "Rain falls on a roof."},
    ]
    path = tmp_path / "manifest.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return path


def test_table_7_prompt_verbatim():
    assert STORY_PROMPT.format(audio_description="AUDIO CAPTION", video_description="VIDEO DESCRIPTION") == (
        "Audio caption or speech transcription: AUDIO CAPTION. Video description: VIDEO DESCRIPTION. Write a story "
        "combining both audio and video information.")
    assert STORY_QUESTION == "Write a story about what you hear and see."
    # a description's own full stop is not doubled by the one the prompt puts after it
    assert story_prompt("A dog barks.", " A cat sleeps ") == (
        "Audio caption or speech transcription: A dog barks. Video description: A cat sleeps. Write a story "
        "combining both audio and video information.")


def test_make_storytelling_writes_training_rows_and_continues(tmp_path, server, capsys):
    manifest, output = _manifest(tmp_path), tmp_path / "out" / "story.jsonl"
    argv = ["make-storytelling", "--manifest", str(manifest), "--output", str(output), "--judge-url", server,
            "--judge-model", "gpt-3.5-turbo", "--max-new-tokens", "300"]
    assert main([*argv, "--limit", "2"]) == 0
    assert _StoryServer.prompts == [
        "Audio caption or speech transcription: A dog barks while birds chirp. Video description: A person chops "
        "onions in a kitchen. Write a story combining both audio and video information.",
        "Audio caption or speech transcription: GO DO YOU HEAR. Video description: Someone rides a bicycle down a "
        "hill. Write a story combining both audio and video information.",
    ]
    assert "wrote 2 storytelling rows" in capsys.readouterr().out
    # the rerun continues: only the third pair is sent
    assert main(argv) == 0
    assert len(_StoryServer.prompts) == 3 and "A cat sleeps on a sofa" in _StoryServer.prompts[2]
    dataset = load_av_dataset(output)
    assert len(dataset) == 3
    assert dataset[0]["video"] == str(tmp_path / "ego4d" / "a.mp4")
    assert dataset[0]["audio"] == str(tmp_path / "audiocaps" / "dog.wav")
    assert dataset[1]["audio"] == "/data/librispeech/84-1.flac"
    assert dataset["modality"] == ["audio_visual"] * 3
    assert dataset["prompt"] == [STORY_QUESTION] * 3
    assert dataset["answer"] == [f"Once upon a time (story {i}), 300 tokens at most." for i in (1, 2, 3)]
    assert dataset["generator"] == [f"gpt-3.5-turbo@{server}"] * 3
    assert dataset["audio_description"][1] == "GO DO YOU HEAR"


def test_shuffled_audio_and_manifest_errors(tmp_path, capsys):
    manifest = _manifest(tmp_path)
    rows = make_storytelling_set(manifest, tmp_path / "s.jsonl", lambda prompt: "A story.", shuffle_audio=True, seed=3)
    for row in rows:  # each video keeps its description; the audio and its caption move together
        assert (row["audio"].endswith("dog.wav")) == (row["audio_description"] == "A dog barks while birds chirp.")
    assert [r["video_description"] for r in rows][0] == "A person chops onions in a kitchen."
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"video": "a.mp4", "video_description": "d", "audio": "a.wav"}) + "\n")
    with pytest.raises(ValueError, match="line 1: give exactly one of \\['audio_caption', 'transcript'\\]"):
        make_storytelling_set(bad, tmp_path / "x.jsonl", lambda prompt: "story")
    bad.write_text(json.dumps({"video": "a.mp4", "audio": "a.wav", "transcript": "t"}) + "\n")
    with pytest.raises(ValueError, match="line 1: field 'video_description' must be a non-empty string"):
        make_storytelling_set(bad, tmp_path / "x.jsonl", lambda prompt: "story")
    assert main(["make-storytelling", "--manifest", str(manifest), "--output", str(tmp_path / "y.jsonl")]) == 2
    assert "transformers-av make-storytelling: error: give --judge-url" in capsys.readouterr().err


def test_storytelling_recipe():
    """FAVOR §4.3: "fine-tuned on this data for only 100 steps with a very small learning rate"."""
    settings = load_train_settings(overrides={"model": "tiny-favor", "train_data": "story.jsonl",
                                              "recipe": "favor-storytelling"})
    assert (settings.max_steps, settings.learning_rate, settings.lora) == (100, 1e-5, True)
    assert "100 steps" in TRAINING_RECIPES["favor-storytelling"].source
    assert "not in the paper" in TRAINING_RECIPES["favor-storytelling"].source
