"""Tasks, SAVE conversion, the LLM judge (local server) and `transformers-av evaluate` end to end (tiny model)."""

from __future__ import annotations

import json
import re
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from transformers_av.evaluation import get_task
from transformers_av.evaluation.data import convert_save_annotations, load_manifest
from transformers_av.evaluation.judge import OpenAICompatibleJudge, judge_verdict
from transformers_av.evaluation.runner import bootstrap_interval, read_jsonl, score


def test_convert_save_annotation_files(tmp_path):
    nextqa = [{"image": "1101/2574374895.mp4", "question": "what did the baby do", "answer": "lay on floor",
               "answer_candidates": ["clap", "lay on floor"]}]
    (tmp_path / "nextqa.json").write_text(json.dumps(nextqa))
    assert convert_save_annotations(tmp_path / "nextqa.json", get_task("nextqa_mc")) == [
        {"id": "0", "question": "what did the baby do", "answer": "lay on floor", "video": "1101/2574374895.mp4",
         "choices": ["clap", "lay on floor"]}
    ]
    avsd = [{"image_name": ["Charades_v1_480/Y4U6T.mp4", "audios/Y4U6T.wav"],
             "conversation": [["Is this a man?", "Yes."], ["What is he doing?", "Sitting."]]}]
    (tmp_path / "avsd.json").write_text(json.dumps(avsd))
    turns = convert_save_annotations(tmp_path / "avsd.json", get_task("avsd"))
    assert [t["id"] for t in turns] == ["0_0", "0_1"]
    assert turns[1] == {"id": "0_1", "question": "What is he doing?", "answer": "Sitting.",
                        "history": [["Is this a man?", "Yes."]], "video": "Charades_v1_480/Y4U6T.mp4",
                        "audio": "audios/Y4U6T.wav"}
    (tmp_path / "bad.json").write_text(json.dumps([{"image": "x.jpg", "question": "q", "answer": "a"}]))
    with pytest.raises(ValueError, match="lacks video, required by nextqa_mc"):
        convert_save_annotations(tmp_path / "bad.json", get_task("nextqa_mc"))


def test_bootstrap_interval_brackets_the_value():
    per_sample = [1.0, 0.0, 1.0, 1.0]
    low, high = bootstrap_interval(lambda idx: sum(per_sample[i] for i in idx) / len(idx), 4)
    assert 0.0 <= low <= 0.75 <= high <= 1.0
    assert bootstrap_interval(lambda idx: 1.0, 10) == (1.0, 1.0)  # a constant statistic has a zero-width interval


class _JudgeHandler(BaseHTTPRequestHandler):
    """A fake OpenAI-compatible judge: answers Yes when the graded answer mentions the reference's key word."""

    requests: list[dict] = []

    def do_POST(self):  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).requests.append({"path": self.path, "auth": self.headers.get("Authorization"), **body})
        prompt = body["messages"][-1]["content"]
        graded = re.search(r'the sound source mentioned in answer "(.*)"\? Answer', prompt)
        verdict = "Yes, it matches." if graded and "train" in graded.group(1) else "No. Different source."
        payload = json.dumps({"choices": [{"message": {"role": "assistant", "content": verdict}}]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args):
        pass


@pytest.fixture
def judge_server():
    _JudgeHandler.requests = []
    server = HTTPServer(("127.0.0.1", 0), _JudgeHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()
    server.server_close()


def test_llm_judge_over_http_stores_raw_answers_and_resumes(judge_server, tmp_path):
    task = get_task("avssd")
    records = [
        {"id": "0", "question": "What is the source of the sound?", "prediction": "A train whistling.",
         "reference": "The source of this sound in this scene is train whistling."},
        {"id": "1", "question": "What is the source of the sound?", "prediction": "A dog barking.",
         "reference": "The source of this sound in this scene is people belly laughing."},
    ]
    judge = OpenAICompatibleJudge(judge_server, "judge-model", api_key="k")
    summary = score(task, records, judge=judge, judgments_file=tmp_path / "judgments.jsonl")
    # Sample 0 judged Yes, sample 1 No -> accuracy 1/2.
    assert summary["value"] == 0.5 and summary["metric"] == "accuracy" and summary["n"] == 2
    assert [r["judge_answers"]["judge"] for r in records] == ["Yes, it matches.", "No. Different source."]
    assert [r["verdict"] for r in records] == [True, False]
    sent = _JudgeHandler.requests
    assert [r["path"] for r in sent] == ["/v1/chat/completions"] * 2
    assert sent[0]["model"] == "judge-model" and sent[0]["auth"] == "Bearer k" and sent[0]["temperature"] == 0.0
    assert sent[0]["messages"] == [{"role": "user", "content": (  # FAVOR Table 6 / video-SALMONN Table 8
        'Is the sound source mentioned in answer "The source of this sound in this scene is train whistling." the '
        'same as the sound source mentioned in answer "A train whistling."? Answer "Yes" if they are the same, and '
        '"No" if they are different or one does not mention the sound source.')}]
    stored = read_jsonl(tmp_path / "judgments.jsonl")
    assert [s["judge_answer"] for s in stored] == ["Yes, it matches.", "No. Different source."]
    # Scoring again reuses the stored verdicts: no new request.
    score(task, [dict(r) for r in records], judge=judge, judgments_file=tmp_path / "judgments.jsonl")
    assert len(_JudgeHandler.requests) == 2
    # a system message (Video-ChatGPT's prompts have one) goes first, as the chat-completions protocol has it
    assert judge("Rate this.", system="You are a judge.") == "No. Different source."
    assert _JudgeHandler.requests[-1]["messages"] == [{"role": "system", "content": "You are a judge."},
                                                      {"role": "user", "content": "Rate this."}]
    assert judge_verdict("Verdict: no.") is False and judge_verdict("maybe") is None
    with pytest.raises(ValueError, match="scored by an LLM judge"):
        score(task, records)


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory):
    import torch

    from transformers_av.models.favor.modeling_favor import FavorForConditionalGeneration
    from transformers_av.testing import tiny_favor_config
    from transformers_av.presets.tiny import tiny_processor

    torch.manual_seed(0)
    config = tiny_favor_config("video_salmonn")
    path = tmp_path_factory.mktemp("tiny_model")
    FavorForConditionalGeneration(config).save_pretrained(path)
    tiny_processor(config).save_pretrained(path)
    return path


def test_cli_evaluate_streams_resumes_and_writes_summary_and_model_card(tiny_model_dir, tmp_path):
    from transformers_av.cli import main
    from transformers_av.testing import make_av_clip

    media = tmp_path / "media"
    make_av_clip(media / "clip.mp4", seconds=1.0, fps=4, size=(32, 32))
    rows = [{"id": f"s{i}", "question": "where is this place", "choices": ["mall", "river"], "answer": "river",
             "video": "clip.mp4"} for i in range(3)]
    manifest = tmp_path / "manifest.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "results"
    card = tmp_path / "card" / "README.md"
    base = ["evaluate", "--model", str(tiny_model_dir), "--task", "nextqa_mc", "--data", str(manifest),
            "--media-root", str(media), "--output", str(out), "--batch-size", "2", "--max-new-tokens", "3",
            "--no-progress"]
    assert main(base + ["--limit", "2"]) == 0  # an "interrupted" run: 2 of 3 samples
    first = read_jsonl(out / "predictions.jsonl")
    assert [r["id"] for r in first] == ["s0", "s1"]
    with (out / "predictions.jsonl").open("a") as handle:
        handle.write('{"id": "s2", "predic')  # a write cut off by the interruption
    assert main(base + ["--model-card", str(card)]) == 0
    records = read_jsonl(out / "predictions.jsonl")
    assert [r["id"] for r in records] == ["s0", "s1", "s2"]  # resumed: only s2 generated, the torn line dropped
    assert records[:2] == first
    assert records[2]["prompt"] == get_task("nextqa_mc").format_prompt(rows[2])
    results = read_jsonl(out / "results.jsonl")
    summary = json.loads((out / "summary.json").read_text())
    assert summary["n"] == 3 and summary["task"] == "nextqa_mc"
    assert summary["value"] == pytest.approx(sum(r["score"] for r in results) / 3)  # the same float64 mean
    assert summary["ci95"][0] <= summary["value"] <= summary["ci95"][1]
    assert "| nextqa_mc | accuracy ↑ |" in (out / "summary.md").read_text()
    front = card.read_text()
    assert "model-index:" in front and "nextqa_mc" in front and "accuracy" in front


def test_load_manifest_formats_and_errors(tmp_path):
    (tmp_path / "m.json").write_text(json.dumps([{"answer": "a"}, {"id": 5, "answer": "b"}]))
    assert [r["id"] for r in load_manifest(tmp_path / "m.json")] == ["0", "5"]
    (tmp_path / "d.jsonl").write_text('{"id": "x"}\n{"id": "x"}\n')
    with pytest.raises(ValueError, match="duplicate sample id 'x'"):
        load_manifest(tmp_path / "d.jsonl")
    with pytest.raises(FileNotFoundError, match="manifest not found"):
        load_manifest(tmp_path / "missing.jsonl")
    # the same rows as CSV, TSV, Parquet and a saved datasets folder
    import datasets

    table = datasets.Dataset.from_list([{"id": "a1", "question": "Q1", "answer": "yes"},
                                        {"id": "a2", "question": "Q2", "answer": "no"}])
    table.to_csv(str(tmp_path / "m.csv"), index=False)
    (tmp_path / "m.tsv").write_text("id\tquestion\tanswer\na1\tQ1\tyes\na2\tQ2\tno\n")
    table.to_parquet(str(tmp_path / "m.parquet"))
    table.save_to_disk(str(tmp_path / "saved"))
    for name in ("m.csv", "m.tsv", "m.parquet", "saved"):
        rows = load_manifest(tmp_path / name)
        assert [(r["id"], r["question"], r["answer"]) for r in rows] == [("a1", "Q1", "yes"), ("a2", "Q2", "no")], name


def test_lmms_eval_plugin_routes_video_its_sound_and_separate_audio():
    # the media routing alone, in plain Python (lmms-eval itself runs the plugin in tests/test_lmms_eval_plugin.py)
    from transformers_av.evaluation.lmms_eval_plugin import _messages_to_inputs

    video_only = [{"role": "user", "content": [{"type": "video", "url": "a.mp4"}, {"type": "text", "text": "Q?"}]}]
    assert _messages_to_inputs(video_only) == {"text": "Q?", "videos": "a.mp4"}  # the video's own sound track
    separate = [{"role": "user", "content": [{"type": "video", "url": "a.mp4"}, {"type": "audio", "url": "b.wav"},
                                             {"type": "text", "text": "Q?"}]}]
    assert _messages_to_inputs(separate) == {"text": "Q?", "videos": "a.mp4", "audio": "b.wav"}
    with pytest.raises(ValueError, match="one image per request"):
        _messages_to_inputs([{"role": "user", "content": [{"type": "image", "url": 1}, {"type": "image", "url": 2}]}])


def test_transformers_judge_answers_with_greedy_generation_of_the_prompt(tmp_path):
    # a local causal LM as judge: its raw answer is the greedy continuation of the judge prompt
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from transformers_av.evaluation.judge import TransformersJudge
    from transformers_av.presets.tiny import tiny_text_config
    from transformers_av.presets.tiny import ASSETS

    torch.manual_seed(0)
    llm = LlamaForCausalLM(LlamaConfig(**{k: v for k, v in tiny_text_config().items() if k != "model_type"})).eval()
    tokenizer = AutoTokenizer.from_pretrained(ASSETS / "llama_tokenizer")
    llm.save_pretrained(tmp_path / "judge")
    tokenizer.save_pretrained(tmp_path / "judge")

    judge = TransformersJudge(str(tmp_path / "judge"), max_new_tokens=5)
    prompt = "Question: what sound is heard? Reference: a dog barks. Answer: a dog. Is the answer correct?"
    answer = judge(prompt)
    ids = tokenizer(prompt, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        expected = llm.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=5, do_sample=False,
                                pad_token_id=tokenizer.pad_token_id or tokenizer.eos_token_id)
    assert answer == tokenizer.decode(expected[0, ids.shape[1]:], skip_special_tokens=True)
    assert answer.strip()  # a real continuation, not an empty string that would match anything
    assert judge.name == str(tmp_path / "judge")
    # without a chat template, a system message is written before the prompt
    ids = tokenizer("Be strict.\n\n" + prompt, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        expected = llm.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=5, do_sample=False,
                                pad_token_id=tokenizer.pad_token_id or tokenizer.eos_token_id)
    assert judge(prompt, system="Be strict.") == tokenizer.decode(expected[0, ids.shape[1]:], skip_special_tokens=True)


def test_score_by_rule_wer_textvqa_and_exact_match():
    import jiwer

    from transformers_av.evaluation.scoring import whisper_english_normalizer

    records = [{"id": "0", "prediction": "the cat sat on a mat", "reference": "The cat sat on the mat."},
               {"id": "1", "prediction": "hello there", "reference": "uh, hmm."}]  # a filler-only reference
    summary = score(get_task("asr_librispeech"), records, resamples=50)
    norm = whisper_english_normalizer()
    # (1 substitution + 2 insertions) / 6 reference words, as jiwer computes it on the normalised corpus
    assert summary["value"] == jiwer.process_words([norm(r["reference"]) for r in records],
                                                   [norm(r["prediction"]) for r in records]).wer == 0.5
    assert [r["errors"] for r in records] == [1, 2] and records[1]["score"] == 2  # jiwer: insertions, 0 words
    assert summary["metric"] == "wer" and not summary["higher_is_better"]

    humans = ["dakota"] * 3 + ["digital"] * 7
    records = [{"id": "0", "prediction": "Dakota.", "reference": humans},
               {"id": "1", "prediction": "It says dakota", "reference": humans}]
    summary = score(get_task("ocr_textvqa"), records, resamples=50)
    assert [r["score"] for r in records] == [pytest.approx(0.9), 0.0] and summary["value"] == pytest.approx(0.45)

    records = [{"id": "0", "prediction": "Yes.", "reference": "Yes"}, {"id": "1", "prediction": "Yes, it is.",
                                                                        "reference": "Yes"}]
    assert score(get_task("avm"), records, resamples=50)["value"] == 0.5  # exact match: the second is a miss
    assert score(get_task("avm").with_options(rule="yes_no"), records, resamples=50)["value"] == 1.0
