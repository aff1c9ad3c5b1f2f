"""The Video-ChatGPT judge protocol (Maaz et al., 2023), which the Audio-Visual LLM paper (Shu et al.) follows.

Shu et al. §4.2: "we report top-1 accuracy [55] on QA tasks" ([55] = Video-ChatGPT) for open-ended video QA (MSVD-QA,
MSRVTT-QA, ActivityNet-QA, Table 1) and audio-visual QA (AVSD, AVSSD, MUSIC-AVQA, Table 2); Table 8/12: "We follow
Video-ChatGPT to report score results (1~5) on correct, detail, context, temporal, and consistency."

The prompts below are quoted verbatim from github.com/mbzuai-oryx/Video-ChatGPT, folder `quantitative_evaluation/`:
`evaluate_activitynet_qa.py` (open-ended QA: a yes/no verdict and a 0-5 score) and
`evaluate_benchmark_1_correctness.py`, `_2_detailed_orientation.py`, `_3_context.py`, `_4_temporal.py` (commit
69ea1db32aa8a6406620e615f227754f0f967c08) and `_5_consistency.py` (commit ccac22747c8520f87d927afd3e9d0e085fce4296,
which reads the second question from `Q2`). The source builds each message from adjacent Python string literals, so
sentences run together where no "\\n" separates them ("...the task:------##INSTRUCTIONS: - Focus..."); the strings
here are the same concatenations. The user messages keep the source's f-string field names as placeholders.

Scoring, as the source computes it: the judge answers with a Python dict literal (`ast.literal_eval`); a score is
`int(score)`; the QA accuracy is yes / (yes + no), counting a verdict as yes when "yes" occurs in it (else no when "no"
does). The source retries a sample until its answer parses; here an answer that does not parse is recorded and left
out of both counts (and reported as `unparsed`).
"""

from __future__ import annotations

import ast
import re
from typing import Any

from .judge import JudgePrompt

__all__ = [
    "VIDEO_CHATGPT_DIMENSIONS", "VIDEO_CHATGPT_QA", "judged_score", "judged_yes", "parse_judge_dict", "qa_accuracy_and_score",
]

_REPOSITORY = "github.com/mbzuai-oryx/Video-ChatGPT, quantitative_evaluation/"
_QA_FIELDS = {"{question}": "question", "{answer}": "reference", "{pred}": "prediction"}

_USER_HEADER = (
    "Please evaluate the following video-based question-answer pair:\n\n"
    "Question: {question}\n"
    "Correct Answer: {answer}\n"
    "Predicted Answer: {pred}\n\n"
)


def _score_request(what: str, highest: str, key_value: str) -> str:
    """The closing instructions shared by the four single-question dimension prompts (identical words in each file)."""
    return (
        f"Provide your evaluation only as a {what} score where the {what} score is an integer value between 0 and 5, "
        f"with 5 indicating the highest level of {highest}. "
        f"Please generate the response in the form of a Python dictionary string with keys 'score', where its value "
        f"is {key_value} in INTEGER, not STRING."
        "DO NOT PROVIDE ANY OTHER OUTPUT TEXT OR EXPLANATION. Only provide the Python dictionary string. "
        "For example, your response should look like this: {''score': 4.8}."
    )


VIDEO_CHATGPT_QA = JudgePrompt(
    system=(
        "You are an intelligent chatbot designed for evaluating the correctness of generative outputs for "
        "question-answer pairs. "
        "Your task is to compare the predicted answer with the correct answer and determine if they match "
        "meaningfully. Here's how you can accomplish the task:"
        "------"
        "##INSTRUCTIONS: "
        "- Focus on the meaningful match between the predicted answer and the correct answer.\n"
        "- Consider synonyms or paraphrases as valid matches.\n"
        "- Evaluate the correctness of the prediction compared to the answer."
    ),
    template=(
        _USER_HEADER
        + "Provide your evaluation only as a yes/no and score where the score is an integer value between 0 and 5, "
        "with 5 indicating the highest meaningful match. "
        "Please generate the response in the form of a Python dictionary string with keys 'pred' and 'score', where "
        "value of 'pred' is  a string of 'yes' or 'no' and value of 'score' is in INTEGER, not STRING."
        "DO NOT PROVIDE ANY OTHER OUTPUT TEXT OR EXPLANATION. Only provide the Python dictionary string. "
        "For example, your response should look like this: {'pred': 'yes', 'score': 4.8}."
    ),
    placeholders=_QA_FIELDS,
    source=_REPOSITORY + "evaluate_activitynet_qa.py",
    verbatim=True,
)

_SYSTEM_OPENING = "You are an intelligent chatbot designed for evaluating the {} of generative outputs for {}. "

VIDEO_CHATGPT_DIMENSIONS: dict[str, JudgePrompt] = {
    "correctness": JudgePrompt(
        system=(
            _SYSTEM_OPENING.format("factual accuracy", "video-based question-answer pairs")
            + "Your task is to compare the predicted answer with the correct answer and determine if they are "
            "factually consistent. Here's how you can accomplish the task:"
            "------"
            "##INSTRUCTIONS: "
            "- Focus on the factual consistency between the predicted answer and the correct answer. The predicted "
            "answer should not contain any misinterpretations or misinformation.\n"
            "- The predicted answer must be factually accurate and align with the video content.\n"
            "- Consider synonyms or paraphrases as valid matches.\n"
            "- Evaluate the factual accuracy of the prediction compared to the answer."
        ),
        template=_USER_HEADER + _score_request(
            "factual accuracy", "factual consistency", "the factual accuracy score"
        ),
        placeholders=_QA_FIELDS,
        source=_REPOSITORY + "evaluate_benchmark_1_correctness.py",
        verbatim=True,
    ),
    "detail": JudgePrompt(
        system=(
            _SYSTEM_OPENING.format("detail orientation", "video-based question-answer pairs")
            + "Your task is to compare the predicted answer with the correct answer and determine its level of "
            "detail, considering both completeness and specificity. Here's how you can accomplish the task:"
            "------"
            "##INSTRUCTIONS: "
            "- Check if the predicted answer covers all major points from the video. The response should not leave "
            "out any key aspects.\n"
            "- Evaluate whether the predicted answer includes specific details rather than just generic points. It "
            "should provide comprehensive information that is tied to specific elements of the video.\n"
            "- Consider synonyms or paraphrases as valid matches.\n"
            "- Provide a single evaluation score that reflects the level of detail orientation of the prediction, "
            "considering both completeness and specificity."
        ),
        template=_USER_HEADER + _score_request(
            "detail orientation", "detail orientation", "the detail orientation score"
        ),
        placeholders=_QA_FIELDS,
        source=_REPOSITORY + "evaluate_benchmark_2_detailed_orientation.py",
        verbatim=True,
    ),
    "context": JudgePrompt(
        system=(
            _SYSTEM_OPENING.format("contextual understanding", "video-based question-answer pairs")
            + "Your task is to compare the predicted answer with the correct answer and determine if the generated "
            "response aligns with the overall context of the video content. Here's how you can accomplish the task:"
            "------"
            "##INSTRUCTIONS: "
            "- Evaluate whether the predicted answer aligns with the overall context of the video content. It should "
            "not provide information that is out of context or misaligned.\n"
            "- The predicted answer must capture the main themes and sentiments of the video.\n"
            "- Consider synonyms or paraphrases as valid matches.\n"
            "- Provide your evaluation of the contextual understanding of the prediction compared to the answer."
        ),
        template=_USER_HEADER + _score_request(
            "contextual understanding", "contextual understanding", "contextual understanding score"
        ),
        placeholders=_QA_FIELDS,
        source=_REPOSITORY + "evaluate_benchmark_3_context.py",
        verbatim=True,
    ),
    "temporal": JudgePrompt(
        system=(
            _SYSTEM_OPENING.format("temporal understanding", "video-based question-answer pairs")
            + "Your task is to compare the predicted answer with the correct answer and determine if they correctly "
            "reflect the temporal sequence of events in the video content. Here's how you can accomplish the task:"
            "------"
            "##INSTRUCTIONS: "
            "- Focus on the temporal consistency between the predicted answer and the correct answer. The predicted "
            "answer should correctly reflect the sequence of events or details as they are presented in the video "
            "content.\n"
            "- Consider synonyms or paraphrases as valid matches, but only if the temporal order is maintained.\n"
            "- Evaluate the temporal accuracy of the prediction compared to the answer."
        ),
        template=_USER_HEADER + _score_request(
            "temporal accuracy", "temporal consistency", "the temporal accuracy score"
        ),
        placeholders=_QA_FIELDS,
        source=_REPOSITORY + "evaluate_benchmark_4_temporal.py",
        verbatim=True,
    ),
    "consistency": JudgePrompt(
        system=(
            _SYSTEM_OPENING.format("consistency", "similar video-based question-answer pairs")
            + "You will be given two very similar questions, a common answer common to both the questions and "
            "predicted answers for the two questions ."
            "Your task is to compare the predicted answers for two very similar question, with a common correct "
            "answer and determine if they are consistent. Here's how you can accomplish the task:"
            "------"
            "##INSTRUCTIONS: "
            "- Focus on the consistency between the two predicted answers and the correct answer. Both predicted "
            "answers should correspond to the correct answer and to each other, and should not contain any "
            "contradictions or significant differences in the conveyed information.\n"
            "- Both predicted answers must be consistent with each other and the correct answer, in terms of the "
            "information they provide about the video content.\n"
            "- Consider synonyms or paraphrases as valid matches, but only if they maintain the consistency in the "
            "conveyed information.\n"
            "- Evaluate the consistency of the two predicted answers compared to the correct answer."
        ),
        template=(
            "Please evaluate the following video-based question-answer pair:\n\n"
            "Question 1: {question1}\n"
            "Question 2: {question2}\n"
            "Correct Answer: {answer}\n"
            "Predicted Answer to Question 1: {pred1}\n"
            "Predicted Answer to Question 2: {pred2}\n\n"
            + _score_request("consistency", "consistency", "the consistency score")
        ),
        placeholders={"{question1}": "question", "{question2}": "question2", "{answer}": "reference",
                      "{pred1}": "prediction", "{pred2}": "prediction2"},
        source=_REPOSITORY + "evaluate_benchmark_5_consistency.py",
        verbatim=True,
    ),
}


def parse_judge_dict(answer: str) -> dict[str, Any] | None:
    """The judge's Python dict literal (`{'pred': 'yes', 'score': 4}`), or None when the answer is not one.

    Like the source (`ast.literal_eval` of the whole answer); a dict embedded in surrounding text is also accepted.
    """
    for candidate in (answer.strip(), *re.findall(r"\{[^{}]*\}", answer)):
        try:
            value = ast.literal_eval(candidate)
        except (ValueError, SyntaxError, MemoryError, RecursionError):
            continue
        if isinstance(value, dict):
            return value
    return None


def judged_score(parsed: dict[str, Any] | None) -> int | None:
    """`int(score)` of a parsed judge answer, as the source computes it; None when absent or not a number."""
    if parsed is None:
        return None
    try:
        return int(parsed["score"])
    except (KeyError, TypeError, ValueError):
        return None


def judged_yes(parsed: dict[str, Any] | None) -> bool | None:
    """The QA verdict as the source reads it: yes when "yes" occurs in `pred`, else no when "no" does, else None."""
    if parsed is None or not isinstance(parsed.get("pred"), str):
        return None
    pred = parsed["pred"].lower()
    return True if "yes" in pred else False if "no" in pred else None


def qa_accuracy_and_score(verdicts: list[bool | None], scores: list[int | None]) -> tuple[float, float]:
    """Video-ChatGPT's QA accuracy (yes / (yes + no)) and mean score over the parsed answers."""
    decided = [v for v in verdicts if v is not None]
    numbers = [s for s in scores if s is not None]
    if not decided or not numbers:
        raise ValueError("no judge answer could be parsed as {'pred': 'yes'|'no', 'score': int}")
    return sum(decided) / len(decided), sum(numbers) / len(numbers)
