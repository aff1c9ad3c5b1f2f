"""The AVEB (FAVOR) and SAVE (video-SALMONN) tasks as small declarative definitions.

A task says which media a sample needs, how its prompt is written, which manifest field holds the reference and
which metric scores it. Samples come from a manifest (see `transformers_av.evaluation.data`) with the fields:

| field | meaning |
|---|---|
| `id` | unique sample id (used to resume an interrupted run); defaults to the row number |
| `question` | the question / instruction text (tasks with a fixed instruction ignore it) |
| `answer` | the reference: a string, or a list of strings (captions, TextVQA's human answers) |
| `choices` | multiple-choice options, in the order they are shown (A, B, C...) |
| `history` | AVSD: the previous dialogue turns, a list of `[question, answer]` pairs |
| `video`, `audio`, `image` | media paths, relative to `--media-root` (or absolute) |

Prompt sources. The SAVE annotation files (github.com/bytedance/SALMONN, branch `videosalmonn`, folder `SAVEBench/`)
carry the instruction of several tasks in their `question` field; those are used verbatim (How2:
"Can you transcribe the speech into text, paying attention to the video?", Flickr30k: "Write a short description about
this image.", AVSSD: "What is the source of the sound?", AVM: four "Is the audio ...?" variants, GQA / TextVQA /
NExT-QA / Ego4D-QA / Presentation-QA: the dataset's own question). The ASR and audio captioning instructions come
from the official repository's prompt list and example (`prompt/alignment_speech_multitask.json`,
`dummy/dummy_audio.json`); the papers do not print their test prompts. How the multiple-choice options are laid out in
the prompt, the ISQA/AVSD instructions and the LLM-judge prompts are NOT the papers' verbatim wording (it is not
published in a form we could find); each such string is marked `verbatim=False` below.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .scoring import option_label

__all__ = ["TASKS", "Task", "get_task"]

MEDIA_KINDS = ("video", "audio", "image")


@dataclass(frozen=True)
class Task:
    """One benchmark task.

    Args:
        name: registry key, used by `--task`.
        title: human-readable name.
        benchmarks: which papers' benchmarks contain it ("AVEB", "SAVE").
        dataset: the public dataset and split.
        prompt: `str.format` template; fields: `{question}`, `{options}` (multiple choice), `{history}` (AVSD).
        prompt_verbatim: whether `prompt` is the papers'/official wording (see the module docstring).
        requires: media kinds every sample must have.
        optional_media: media kinds a sample may have (e.g. a video's separate audio track).
        metric: scoring rule: `wer`, `cider`, `spider`, `gqa`, `textvqa`, `multiple_choice`, `yes_no` or `judge`.
        extra_metrics: further corpus metrics reported next to the main one (e.g. METEOR for captioning).
        higher_is_better: direction of the main metric.
        reference_is_list: whether `answer` is a list (captions, human answers).
        judge_prompt: the judge template for `metric="judge"` (fields `{question}`, `{reference}`, `{prediction}`).
        judge_prompt_verbatim: whether `judge_prompt` is the papers' wording.
        max_new_tokens: default generation length.
    """

    name: str
    title: str
    benchmarks: tuple[str, ...]
    dataset: str
    prompt: str
    prompt_verbatim: bool
    requires: tuple[str, ...]
    metric: str
    optional_media: tuple[str, ...] = ()
    extra_metrics: tuple[str, ...] = ()
    higher_is_better: bool = True
    reference_is_list: bool = False
    judge_prompt: str | None = None
    judge_prompt_verbatim: bool = False
    max_new_tokens: int = 64
    notes: str = ""
    fields: tuple[str, ...] = field(default=("id", "question", "answer"))

    @property
    def is_multiple_choice(self) -> bool:
        return self.metric == "multiple_choice"

    def format_prompt(self, sample: Mapping[str, Any]) -> str:
        """The text prompt of one manifest sample."""
        values: dict[str, str] = {"question": str(sample.get("question") or "").strip()}
        if "{question}" in self.prompt and not values["question"]:
            raise ValueError(f"task {self.name}: sample {sample.get('id')!r} has no `question`")
        if self.is_multiple_choice:
            choices = sample.get("choices")
            if not choices:
                raise ValueError(f"task {self.name}: sample {sample.get('id')!r} has no `choices`")
            values["options"] = "\n".join(f"({option_label(i)}) {c}" for i, c in enumerate(choices))
        if "{history}" in self.prompt:
            turns = sample.get("history") or []
            values["history"] = "".join(f"Q: {q}\nA: {a}\n" for q, a in turns)
        return self.prompt.format(**values)

    def media_of(self, sample: Mapping[str, Any]) -> dict[str, Any]:
        """The media entries of a sample this task uses; raises when a required one is missing."""
        media = {}
        for kind in MEDIA_KINDS:
            value = sample.get(kind)
            if kind in self.requires or kind in self.optional_media:
                if value not in (None, ""):
                    media[kind] = value
        missing = [kind for kind in self.requires if kind not in media]
        if missing:
            raise ValueError(
                f"task {self.name}: sample {sample.get('id')!r} lacks {', '.join(missing)} "
                f"(required: {', '.join(self.requires)})"
            )
        return media

    def describe_fields(self) -> str:
        """One line per manifest field this task reads (printed by `transformers-av evaluate --list-tasks`)."""
        lines = ["  id: unique sample id (optional; row number otherwise)"]
        if "{question}" in self.prompt:
            lines.append("  question: the question text")
        if self.is_multiple_choice:
            lines.append("  choices: list of options (shown as (A), (B), ...)")
        if "{history}" in self.prompt:
            lines.append("  history: list of previous [question, answer] turns")
        lines.append("  answer: " + ("list of reference strings" if self.reference_is_list else "reference string"))
        for kind in self.requires:
            lines.append(f"  {kind}: path (required)")
        for kind in self.optional_media:
            lines.append(f"  {kind}: path (optional)")
        return "\n".join(lines)


_MC_PROMPT = "{question}\nOptions:\n{options}\nAnswer with the letter of the correct option."  # NOT verbatim

# LLM-judge templates. NOT the papers' verbatim judge prompts (the FAVOR / video-SALMONN papers describe
# "ChatGPT-assisted" scoring without printing the prompt in any source we could find); they ask for a yes/no verdict,
# so the score is an accuracy as in the papers' tables.
_JUDGE_QA = (
    "You are grading an answer to a question about a video or image with sound.\n"
    "Question: {question}\n"
    "Reference answer: {reference}\n"
    "Answer to grade: {prediction}\n"
    "Is the answer to grade consistent with the reference answer and does it answer the question correctly? "
    "Reply with a single word: Yes or No."
)
_JUDGE_SOUND_SOURCE = (
    "You are grading an answer that names the source of a sound in a video or image.\n"
    "Reference: {reference}\n"
    "Answer to grade: {prediction}\n"
    "Does the answer identify the same sound source as the reference? Reply with a single word: Yes or No."
)

_TASK_LIST = [
    Task(
        name="asr_librispeech",
        title="ASR",
        benchmarks=("AVEB", "SAVE"),
        dataset="LibriSpeech test-clean",
        prompt="Can you transcribe the speech into a written format?",
        prompt_verbatim=False,
        requires=("audio",),
        metric="wer",
        higher_is_better=False,
        max_new_tokens=256,
        notes="prompt from the official prompt list (prompt/alignment_speech_multitask.json); test prompt unpublished",
        fields=("id", "answer", "audio"),
    ),
    Task(
        name="aac_audiocaps",
        title="Audio captioning",
        benchmarks=("AVEB", "SAVE"),
        dataset="AudioCaps test",
        prompt="Describe the audio",
        prompt_verbatim=False,
        requires=("audio",),
        metric="spider",
        extra_metrics=("cider",),
        reference_is_list=True,
        notes="prompt from the official example (dummy/dummy_audio.json); SPIDEr needs Java + Stanford CoreNLP jars",
        fields=("id", "answer", "audio"),
    ),
    Task(
        name="ic_flickr30k",
        title="Image captioning",
        benchmarks=("AVEB", "SAVE"),
        dataset="Flickr30k 1k test (Karpathy)",
        prompt="Write a short description about this image.",
        prompt_verbatim=True,
        requires=("image",),
        metric="cider",
        extra_metrics=("meteor",),
        reference_is_list=True,
        notes="prompt verbatim from SAVEBench/flickr30k_captions.json; METEOR needs Java",
        fields=("id", "answer", "image"),
    ),
    Task(
        name="ocr_textvqa",
        title="OCR",
        benchmarks=("AVEB", "SAVE"),
        dataset="TextVQA val",
        prompt="{question}",
        prompt_verbatim=True,
        requires=("image",),
        metric="textvqa",
        reference_is_list=True,
        notes="question verbatim from SAVEBench/textvqa.json; answer = the 10 human answers",
        fields=("id", "question", "answer", "image"),
    ),
    Task(
        name="vqa_gqa",
        title="VQA",
        benchmarks=("AVEB", "SAVE"),
        dataset="GQA testdev balanced",
        prompt="{question}",
        prompt_verbatim=True,
        requires=("image",),
        metric="gqa",
        notes="question verbatim from SAVEBench/testdev_balanced_questions_with_images.json",
        fields=("id", "question", "answer", "image"),
    ),
    Task(
        name="nextqa_mc",
        title="Video QA",
        benchmarks=("AVEB", "SAVE"),
        dataset="NExT-QA test (multiple choice)",
        prompt=_MC_PROMPT,
        prompt_verbatim=False,
        requires=("video",),
        optional_media=("audio",),
        metric="multiple_choice",
        max_new_tokens=32,
        notes="question and options verbatim from SAVEBench/nextqa_test.json; option layout NOT verbatim",
        fields=("id", "question", "choices", "answer", "video"),
    ),
    Task(
        name="avsr_how2",
        title="AVSR",
        benchmarks=("AVEB", "SAVE"),
        dataset="How2 dev5",
        prompt="Can you transcribe the speech into text, paying attention to the video?",
        prompt_verbatim=True,
        requires=("video",),
        optional_media=("audio",),
        metric="wer",
        higher_is_better=False,
        max_new_tokens=256,
        notes="prompt verbatim from SAVEBench/how2_test.json",
        fields=("id", "answer", "video", "audio"),
    ),
    Task(
        name="avqa_ego4d_mc",
        title="AVQA (Ego4D-QA)",
        benchmarks=("SAVE",),
        dataset="Ego4D-QA (SAVE)",
        prompt=_MC_PROMPT,
        prompt_verbatim=False,
        requires=("video",),
        optional_media=("audio",),
        metric="multiple_choice",
        max_new_tokens=48,
        notes="question and options verbatim from SAVEBench/ego4d_qa.json; option layout NOT verbatim",
        fields=("id", "question", "choices", "answer", "video", "audio"),
    ),
    Task(
        name="avqa_presentation_mc",
        title="AVQA (Presentation-QA)",
        benchmarks=("SAVE",),
        dataset="Presentation-QA (SAVE)",
        prompt=_MC_PROMPT,
        prompt_verbatim=False,
        requires=("video",),
        optional_media=("audio",),
        metric="multiple_choice",
        max_new_tokens=48,
        notes="question and options verbatim from SAVEBench/presentation_qa.json; option layout NOT verbatim",
        fields=("id", "question", "choices", "answer", "video", "audio"),
    ),
    Task(
        name="isqa",
        title="Image spoken QA",
        benchmarks=("AVEB", "SAVE"),
        dataset="ISQA (spoken questions about images)",
        prompt="Answer the question asked in the speech, based on the image.",
        prompt_verbatim=False,
        requires=("image", "audio"),
        metric="judge",
        judge_prompt=_JUDGE_QA,
        max_new_tokens=128,
        notes="the question is spoken (audio); `question` holds its transcript for the judge",
        fields=("id", "question", "answer", "image", "audio"),
    ),
    Task(
        name="avsd",
        title="Audio-visual scene-aware dialogue",
        benchmarks=("AVEB", "SAVE"),
        dataset="AVSD (SAVEBench/avsd_textformat_subset.json)",
        prompt="{history}Q: {question}\nA:",
        prompt_verbatim=False,
        requires=("video",),
        optional_media=("audio",),
        metric="judge",
        judge_prompt=_JUDGE_QA,
        max_new_tokens=128,
        notes="one sample per dialogue turn, earlier turns in `history`",
        fields=("id", "question", "history", "answer", "video", "audio"),
    ),
    Task(
        name="avssd",
        title="Audio-visual sound source detection",
        benchmarks=("AVEB", "SAVE"),
        dataset="VGGSS (SAVEBench/testdata_formatted.json)",
        prompt="{question}",
        prompt_verbatim=True,
        requires=("audio",),
        optional_media=("video", "image"),
        metric="judge",
        judge_prompt=_JUDGE_SOUND_SOURCE,
        max_new_tokens=96,
        notes="question verbatim from SAVEBench/testdata_formatted.json ('What is the source of the sound?')",
        fields=("id", "question", "answer", "video", "image", "audio"),
    ),
    Task(
        name="avm",
        title="Audio-visual matching",
        benchmarks=("AVEB", "SAVE"),
        dataset="SpokenCOCO + VGGSS (SAVEBench/audiovisualmatching_combined.json)",
        prompt="{question}",
        prompt_verbatim=True,
        requires=("audio",),
        optional_media=("video", "image"),
        metric="yes_no",
        max_new_tokens=32,
        notes="question verbatim from the annotation file (4 'Is the audio ...?' variants); answer Yes/No",
        fields=("id", "question", "answer", "video", "image", "audio"),
    ),
]

TASKS: dict[str, Task] = {task.name: task for task in _TASK_LIST}


def get_task(name: str) -> Task:
    """Look a task up by name, with the list of valid names in the error."""
    try:
        return TASKS[name]
    except KeyError:
        raise KeyError(f"unknown task {name!r}; available: {', '.join(TASKS)}") from None
