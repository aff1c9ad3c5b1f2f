"""The Video-ChatGPT judge protocol of the Audio-Visual LLM tasks: prompts verbatim from the Video-ChatGPT scripts
(github.com/mbzuai-oryx/Video-ChatGPT, quantitative_evaluation/*.py, transcribed below literal by literal as the source
writes them, hence the long lines), answer parsing and the accuracy / score arithmetic of the source, and the runner asking two questions per
video for consistency."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from transformers_av.evaluation import get_task
from transformers_av.evaluation.runner import generate_answers, read_jsonl, score
from transformers_av.evaluation.video_chatgpt import (
    VIDEO_CHATGPT_DIMENSIONS,
    VIDEO_CHATGPT_QA,
    judged_score,
    judged_yes,
    parse_judge_dict,
)

QUESTION, ANSWER, PRED = "What is the man doing?", "He is playing a guitar.", "The man plays guitar."
VALUES = {"question": QUESTION, "reference": ANSWER, "prediction": PRED}


def test_open_ended_qa_prompt_is_verbatim():
    # evaluate_activitynet_qa.py (commit 69ea1db)
    assert VIDEO_CHATGPT_QA.system == (
        "You are an intelligent chatbot designed for evaluating the correctness of generative outputs for question-answer pairs. "
        "Your task is to compare the predicted answer with the correct answer and determine if they match meaningfully. Here's how you can accomplish the task:"
        "------"
        "##INSTRUCTIONS: "
        "- Focus on the meaningful match between the predicted answer and the correct answer.\n"
        "- Consider synonyms or paraphrases as valid matches.\n"
        "- Evaluate the correctness of the prediction compared to the answer."
    )
    assert VIDEO_CHATGPT_QA.render(VALUES) == (
        "Please evaluate the following video-based question-answer pair:\n\n"
        f"Question: {QUESTION}\n"
        f"Correct Answer: {ANSWER}\n"
        f"Predicted Answer: {PRED}\n\n"
        "Provide your evaluation only as a yes/no and score where the score is an integer value between 0 and 5, with 5 indicating the highest meaningful match. "
        "Please generate the response in the form of a Python dictionary string with keys 'pred' and 'score', where value of 'pred' is  a string of 'yes' or 'no' and value of 'score' is in INTEGER, not STRING."
        "DO NOT PROVIDE ANY OTHER OUTPUT TEXT OR EXPLANATION. Only provide the Python dictionary string. "
        "For example, your response should look like this: {'pred': 'yes', 'score': 4.8}."
    )


_USER = (
    "Please evaluate the following video-based question-answer pair:\n\n"
    f"Question: {QUESTION}\n"
    f"Correct Answer: {ANSWER}\n"
    f"Predicted Answer: {PRED}\n\n"
)
_CLOSING = (
    "DO NOT PROVIDE ANY OTHER OUTPUT TEXT OR EXPLANATION. Only provide the Python dictionary string. "
    "For example, your response should look like this: {''score': 4.8}."
)

EXPECTED = {
    "correctness": (  # evaluate_benchmark_1_correctness.py
        "You are an intelligent chatbot designed for evaluating the factual accuracy of generative outputs for video-based question-answer pairs. "
        "Your task is to compare the predicted answer with the correct answer and determine if they are factually consistent. Here's how you can accomplish the task:"
        "------"
        "##INSTRUCTIONS: "
        "- Focus on the factual consistency between the predicted answer and the correct answer. The predicted answer should not contain any misinterpretations or misinformation.\n"
        "- The predicted answer must be factually accurate and align with the video content.\n"
        "- Consider synonyms or paraphrases as valid matches.\n"
        "- Evaluate the factual accuracy of the prediction compared to the answer.",
        _USER
        + "Provide your evaluation only as a factual accuracy score where the factual accuracy score is an integer value between 0 and 5, with 5 indicating the highest level of factual consistency. "
        "Please generate the response in the form of a Python dictionary string with keys 'score', where its value is the factual accuracy score in INTEGER, not STRING."
        + _CLOSING,
    ),
    "detail": (  # evaluate_benchmark_2_detailed_orientation.py
        "You are an intelligent chatbot designed for evaluating the detail orientation of generative outputs for video-based question-answer pairs. "
        "Your task is to compare the predicted answer with the correct answer and determine its level of detail, considering both completeness and specificity. Here's how you can accomplish the task:"
        "------"
        "##INSTRUCTIONS: "
        "- Check if the predicted answer covers all major points from the video. The response should not leave out any key aspects.\n"
        "- Evaluate whether the predicted answer includes specific details rather than just generic points. It should provide comprehensive information that is tied to specific elements of the video.\n"
        "- Consider synonyms or paraphrases as valid matches.\n"
        "- Provide a single evaluation score that reflects the level of detail orientation of the prediction, considering both completeness and specificity.",
        _USER
        + "Provide your evaluation only as a detail orientation score where the detail orientation score is an integer value between 0 and 5, with 5 indicating the highest level of detail orientation. "
        "Please generate the response in the form of a Python dictionary string with keys 'score', where its value is the detail orientation score in INTEGER, not STRING."
        + _CLOSING,
    ),
    "context": (  # evaluate_benchmark_3_context.py
        "You are an intelligent chatbot designed for evaluating the contextual understanding of generative outputs for video-based question-answer pairs. "
        "Your task is to compare the predicted answer with the correct answer and determine if the generated response aligns with the overall context of the video content. Here's how you can accomplish the task:"
        "------"
        "##INSTRUCTIONS: "
        "- Evaluate whether the predicted answer aligns with the overall context of the video content. It should not provide information that is out of context or misaligned.\n"
        "- The predicted answer must capture the main themes and sentiments of the video.\n"
        "- Consider synonyms or paraphrases as valid matches.\n"
        "- Provide your evaluation of the contextual understanding of the prediction compared to the answer.",
        _USER
        + "Provide your evaluation only as a contextual understanding score where the contextual understanding score is an integer value between 0 and 5, with 5 indicating the highest level of contextual understanding. "
        "Please generate the response in the form of a Python dictionary string with keys 'score', where its value is contextual understanding score in INTEGER, not STRING."
        + _CLOSING,
    ),
    "temporal": (  # evaluate_benchmark_4_temporal.py
        "You are an intelligent chatbot designed for evaluating the temporal understanding of generative outputs for video-based question-answer pairs. "
        "Your task is to compare the predicted answer with the correct answer and determine if they correctly reflect the temporal sequence of events in the video content. Here's how you can accomplish the task:"
        "------"
        "##INSTRUCTIONS: "
        "- Focus on the temporal consistency between the predicted answer and the correct answer. The predicted answer should correctly reflect the sequence of events or details as they are presented in the video content.\n"
        "- Consider synonyms or paraphrases as valid matches, but only if the temporal order is maintained.\n"
        "- Evaluate the temporal accuracy of the prediction compared to the answer.",
        _USER
        + "Provide your evaluation only as a temporal accuracy score where the temporal accuracy score is an integer value between 0 and 5, with 5 indicating the highest level of temporal consistency. "
        "Please generate the response in the form of a Python dictionary string with keys 'score', where its value is the temporal accuracy score in INTEGER, not STRING."
        + _CLOSING,
    ),
}


@pytest.mark.parametrize("dimension", sorted(EXPECTED))
def test_single_question_dimension_prompts_are_verbatim(dimension):
    system, user = EXPECTED[dimension]
    prompt = VIDEO_CHATGPT_DIMENSIONS[dimension]
    assert prompt.system == system
    assert prompt.render(VALUES) == user
    assert prompt.verbatim and prompt.source.startswith("github.com/mbzuai-oryx/Video-ChatGPT")


def test_consistency_prompt_is_verbatim():
    # evaluate_benchmark_5_consistency.py (commit ccac227)
    prompt = VIDEO_CHATGPT_DIMENSIONS["consistency"]
    assert prompt.system == (
        "You are an intelligent chatbot designed for evaluating the consistency of generative outputs for similar video-based question-answer pairs. "
        "You will be given two very similar questions, a common answer common to both the questions and predicted answers for the two questions ."
        "Your task is to compare the predicted answers for two very similar question, with a common correct answer and determine if they are consistent. Here's how you can accomplish the task:"
        "------"
        "##INSTRUCTIONS: "
        "- Focus on the consistency between the two predicted answers and the correct answer. Both predicted answers should correspond to the correct answer and to each other, and should not contain any contradictions or significant differences in the conveyed information.\n"
        "- Both predicted answers must be consistent with each other and the correct answer, in terms of the information they provide about the video content.\n"
        "- Consider synonyms or paraphrases as valid matches, but only if they maintain the consistency in the conveyed information.\n"
        "- Evaluate the consistency of the two predicted answers compared to the correct answer."
    )
    values = {**VALUES, "question2": "What does the man do?", "prediction2": "He strums a guitar."}
    assert prompt.render(values) == (
        "Please evaluate the following video-based question-answer pair:\n\n"
        f"Question 1: {QUESTION}\n"
        "Question 2: What does the man do?\n"
        f"Correct Answer: {ANSWER}\n"
        f"Predicted Answer to Question 1: {PRED}\n"
        "Predicted Answer to Question 2: He strums a guitar.\n\n"
        "Provide your evaluation only as a consistency score where the consistency score is an integer value between 0 and 5, with 5 indicating the highest level of consistency. "
        "Please generate the response in the form of a Python dictionary string with keys 'score', where its value is the consistency score in INTEGER, not STRING."
        + _CLOSING
    )


def test_answers_are_read_as_the_source_reads_them():
    assert parse_judge_dict("{'pred': 'yes', 'score': 4}") == {"pred": "yes", "score": 4}
    assert parse_judge_dict("Sure! {'pred': 'no', 'score': 1}") == {"pred": "no", "score": 1}  # dict inside text
    assert parse_judge_dict("yes, 4") is None
    assert judged_score({"score": 4.8}) == 4  # int(), as the source's int(score_match)
    assert judged_score({"score": "3"}) == 3 and judged_score({"pred": "yes"}) is None
    assert judged_yes({"pred": "Yes"}) is True and judged_yes({"pred": "no"}) is False
    assert judged_yes({"pred": "maybe"}) is None  # neither counted as yes nor as no
    assert judged_yes({"pred": "unknown"}) is False  # the source tests substrings: "unknown" contains "no"


class ScriptedJudge:
    """Answers each judge call from a script keyed by (prediction, first words of the system message)."""

    name = "scripted"

    def __init__(self, answers: dict[str, str]):
        self.answers, self.calls = answers, []

    def __call__(self, prompt: str, system: str | None = None) -> str:
        self.calls.append((system, prompt))
        for key, answer in self.answers.items():
            if key in prompt and (system is not None):
                return answer
        raise AssertionError(f"unexpected judge call: {prompt[:200]}")


def test_open_ended_qa_accuracy_and_score(tmp_path):
    task = get_task("msrvtt_qa")
    records = [{"id": str(i), "question": "what is shown?", "reference": "a dog", "prediction": p}
               for i, p in enumerate(["a dog", "a puppy", "a cat", "bananas"])]
    judge = ScriptedJudge({"Predicted Answer: a dog\n": "{'pred': 'yes', 'score': 5}",
                           "Predicted Answer: a puppy\n": "{'pred': 'yes', 'score': 4.8}",
                           "Predicted Answer: a cat\n": "{'pred': 'no', 'score': 1}",
                           "Predicted Answer: bananas\n": "I cannot judge this."})
    summary = score(task, records, judge=judge, judgments_file=tmp_path / "judgments.jsonl")
    # parsed verdicts yes, yes, no (the 4th does not parse): accuracy 2 / 3; scores 5, int(4.8) = 4, 1 -> mean 10 / 3
    assert summary["value"] == pytest.approx(2 / 3) and summary["metric"] == "accuracy"
    assert summary["extra"] == {"score": pytest.approx(10 / 3), "unparsed": 1}
    assert [r["verdict"] for r in records] == [True, True, False, None]
    assert all(system == VIDEO_CHATGPT_QA.system for system, _ in judge.calls) and len(judge.calls) == 4
    stored = read_jsonl(tmp_path / "judgments.jsonl")
    assert [s["judge_answer"] for s in stored][:2] == ["{'pred': 'yes', 'score': 5}", "{'pred': 'yes', 'score': 4.8}"]


def test_generic_benchmark_scores_every_dimension(tmp_path):
    task = get_task("vcgbench_generic")
    records = [{"id": "a", "question": "q", "reference": "r", "prediction": "p1"},
               {"id": "b", "question": "q", "reference": "r", "prediction": "p2"}]
    scores = {("p1", "factual"): 4, ("p1", "detail"): 3, ("p1", "contextual"): 5,
              ("p2", "factual"): 2, ("p2", "detail"): 1, ("p2", "contextual"): 3}

    class DimensionJudge:
        name = "dimensions"

        def __call__(self, prompt, system=None):
            prediction = prompt.split("Predicted Answer: ")[1].split("\n")[0]
            dimension = system.split("evaluating the ")[1].split(" ")[0]
            return str({"score": scores[(prediction, dimension)]})

    summary = score(task, records, judge=DimensionJudge(), judgments_file=tmp_path / "j.jsonl")
    # means: correctness (4 + 2) / 2 = 3, detail (3 + 1) / 2 = 2, context (5 + 3) / 2 = 4; value = correctness
    assert summary["value"] == 3.0 and summary["metric"] == "score"
    assert summary["extra"] == {"correctness": 3.0, "detail": 2.0, "context": 4.0, "unparsed": 0}
    assert records[1]["judge_scores"] == {"correctness": 2, "detail": 1, "context": 3}
    assert len(read_jsonl(tmp_path / "j.jsonl")) == 6  # one call per (sample, dimension), all stored


class EchoProcessor:
    """A stand-in processor: the prompt's characters are the token ids; decoding maps them back."""

    def __call__(self, text, videos=None, return_tensors="pt", **_):
        width = max(len(t) for t in text)
        ids = torch.tensor([[0] * (width - len(t)) + [ord(c) for c in t] for t in text])
        self.videos = videos
        return {"input_ids": ids}

    def batch_decode(self, ids, skip_special_tokens=True):
        return ["".join(chr(int(i)) for i in row) for row in ids]


class UpperModel:
    """A stand-in model whose "answer" is its prompt in upper case."""

    device = torch.device("cpu")

    def generate(self, input_ids, **_):
        answer = torch.tensor([[ord(chr(int(i)).upper()) if int(i) else 32 for i in row] for row in input_ids])
        return torch.cat([input_ids, answer], dim=1)


def test_consistency_generates_an_answer_to_each_phrasing(tmp_path):
    task = get_task("vcgbench_consistency")
    (tmp_path / "v.mp4").write_bytes(b"")
    samples = [{"id": "0", "question": "what happens?", "question2": "what is going on?", "answer": "a dog runs",
                "video": "v.mp4"}]
    records = generate_answers(UpperModel(), EchoProcessor(), task, samples, tmp_path / "p.jsonl",
                               media_root=tmp_path, progress=False)
    assert records[0]["prediction"] == "WHAT HAPPENS?" and records[0]["prediction2"] == "WHAT IS GOING ON?"
    assert records[0]["prompt2"] == "what is going on?" and records[0]["question2"] == "what is going on?"
    assert read_jsonl(tmp_path / "p.jsonl") == records

    class ConsistencyJudge:
        name = "consistency"

        def __call__(self, prompt, system=None):
            assert "Predicted Answer to Question 2: WHAT IS GOING ON?\n" in prompt
            return "{'score': 3}"

    summary = score(task, records, judge=ConsistencyJudge())
    assert summary["value"] == 3.0 and summary["extra"]["consistency"] == 3.0
    with pytest.raises(ValueError, match="scored by an LLM judge"):
        score(task, records)
