"""The benchmark tasks of the three papers as small declarative definitions.

* AVEB (FAVOR, Sun et al., §4.1 Table 1): ASR, AC, IC, OCR, VQA, Video QA, AVSR, AVSD, ISQA, AVSSD, AVM.
* SAVE (video-SALMONN, Sun et al., Table 1): ASR, AAC, IC, OCR, VQA, Video QA, AVSR, AVQA (Ego4D-QA +
  Presentation-QA), AVSSD, AVM.
* AV-LLM (Audio-Visual LLM, Shu et al., Tables 1-3 and 8): open-ended video QA (MSVD-QA, MSRVTT-QA, ActivityNet-QA)
  and audio-visual QA (AVSD, AVSSD, MUSIC-AVQA) scored by the Video-ChatGPT judge; audio captioning (ClothoV1,
  AudioCaps: CIDEr, SPIDEr); Video-ChatGPT's five generation scores.

A task says which media a sample needs, how its prompt is written, which manifest field holds the reference and
which rule scores it. Samples come from a manifest (see `transformers_av.evaluation.data`) with the fields:

| field | meaning |
|---|---|
| `id` | unique sample id (used to resume an interrupted run); defaults to the row number |
| `question` | the question / instruction text (tasks with a fixed instruction ignore it) |
| `question2` | the second phrasing of the question (Video-ChatGPT consistency only) |
| `answer` | the reference: a string, or a list of strings (captions, TextVQA's human answers) |
| `choices` | multiple-choice options, in the order they are shown (A, B, C...) |
| `history` | AVSD: the previous dialogue turns, a list of `[question, answer]` pairs |
| `video`, `audio`, `image` | media paths, relative to `--media-root` (or absolute) |

Prompt sources, each marked `prompt_verbatim` True only where the text is a source's exact wording:

* the papers: ISQA's fixed instruction "answer the question in the audio about the image" (FAVOR §4.1); the
  multiple-choice layouts (`CHOICE_FORMATS`: FAVOR Table 5 / video-SALMONN Table 6 for NExT-QA, video-SALMONN
  Figures 6-7 for Ego4D-QA and Presentation-QA); the judge prompts (FAVOR Appendix B Table 6, video-SALMONN Appendix D
  Table 8; Video-ChatGPT's scripts for the AV-LLM tasks, see `video_chatgpt.py`);
* the SAVE annotation files (github.com/bytedance/SALMONN, branch `videosalmonn`, `SAVEBench/`), which carry the
  instruction of several tasks in their `question` field (How2, Flickr30k, AVSSD, AVM, the datasets' questions);
* the official repository's prompt list and example for ASR and audio captioning (the papers print only "example
  prompts", Table 5), and our own wording where no source gives one (AVSD's dialogue layout, the AV-LLM tasks'
  instructions: Shu et al. print no evaluation prompt).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .judge import JudgePrompt
from .scoring import option_label
from .video_chatgpt import VIDEO_CHATGPT_DIMENSIONS, VIDEO_CHATGPT_QA

__all__ = ["CHOICE_FORMATS", "RULES", "TASKS", "ChoiceFormat", "Task", "get_task"]

MEDIA_KINDS = ("video", "audio", "image")

# Scoring rules (see scoring.py / runner.score): name -> what it implements.
RULES = {
    "wer": "word error rate (jiwer, Whisper English normaliser)",
    "cider": "CIDEr-D (pycocoevalcap)",
    "spider": "SPIDEr = (CIDEr + SPICE) / 2 (pycocoevalcap; SPICE needs the CoreNLP jars)",
    "gqa": "reference word-by-word in the answer; opposite yes/no absent (FAVOR §4.1, video-SALMONN App. C)",
    "textvqa": "official VQA accuracy over the 10 human answers (Singh et al., 2019)",
    "exact_match": "the answer exactly matches the reference (FAVOR §4.1, video-SALMONN App. C)",
    "multiple_choice": "the answer exactly matches the reference option (FAVOR §4.1, video-SALMONN App. C)",
    "multiple_choice_lenient": "the option chosen by letter or by text is the reference (this package's rule)",
    "yes_no": "the reference yes/no word appears and its opposite does not (this package's rule)",
    "judge": "an LLM judge's Yes/No on the papers' judge prompt (FAVOR App. B, video-SALMONN App. D)",
    "video_chatgpt_qa": "Video-ChatGPT judge: accuracy yes/(yes+no) and mean 0-5 score",
    "video_chatgpt_scores": "Video-ChatGPT judge: mean 0-5 score per dimension",
}


@dataclass(frozen=True)
class ChoiceFormat:
    """How a paper lays a multiple-choice question out in the prompt.

    Args:
        name: registry key (`--choice-format`).
        source: paper and table / figure it comes from.
        verbatim: whether the whole layout is printed by the source (False where part of it is ours).
        render: `(question, choices) -> prompt`.
        note: what is ours, when not everything is verbatim.
    """

    name: str
    source: str
    verbatim: bool
    render: Callable[[str, Sequence[str]], str]
    note: str = ""


CHOICE_FORMATS: dict[str, ChoiceFormat] = {
    # FAVOR Table 5 and video-SALMONN Table 6, NExT-QA: 'Example prompt: "What does the girl in white do after bending
    # down in the middle? Options/Choose one from: (Add choices here during inference)"'.
    "favor": ChoiceFormat(
        name="favor",
        source="FAVOR Appendix A Table 5 / video-SALMONN Appendix A Table 6 (NExT-QA example prompt)",
        verbatim=False,
        render=lambda question, choices: f"{question} Options/Choose one from: {', '.join(choices)}",
        note="'Options/Choose one from:' is the tables' text; how the choices are listed is not printed "
        "('(Add choices here during inference)'): here they are joined with ', '",
    ),
    # video-SALMONN Figures 6-7 (Presentation-QA, Ego4D-QA): "What game are the people likely playing based on the
    # video and audio? Choices: A. Chess, B. Scrabble, C. Monopoly, D. Risk, E. Settlers of Catan".
    "save": ChoiceFormat(
        name="save",
        source="video-SALMONN Appendix B Figures 6-7 (Presentation-QA, Ego4D-QA questions)",
        verbatim=True,
        render=lambda question, choices: f"{question} Choices: "
        + ", ".join(f"{option_label(i)}. {c}" for i, c in enumerate(choices)),
    ),
    "letters": ChoiceFormat(
        name="letters",
        source="this package (pairs with the multiple_choice_lenient rule)",
        verbatim=False,
        render=lambda question, choices: f"{question}\nOptions:\n"
        + "\n".join(f"({option_label(i)}) {c}" for i, c in enumerate(choices))
        + "\nAnswer with the letter of the correct option.",
        note="our own layout, not a paper's",
    ),
}


@dataclass(frozen=True)
class Task:
    """One benchmark task.

    Args:
        name: registry key, used by `--task`.
        title: human-readable name.
        benchmarks: which papers' benchmark tables contain it ("AVEB", "SAVE", "AV-LLM").
        dataset: the public dataset and split.
        prompt: `str.format` template; fields: `{question}`, `{history}` (AVSD). Multiple-choice tasks append their
            options with `choice_format`.
        prompt_verbatim: whether the prompt is a source's exact wording (see the module docstring).
        requires: media kinds every sample must have.
        metric: the scoring rule, one of `RULES`.
        alternative_rules: other rules `with_options(rule=...)` accepts for this task.
        choice_format: multiple-choice layout, a key of `CHOICE_FORMATS` (multiple-choice tasks only).
        optional_media: media kinds a sample may have (e.g. a video's separate audio track).
        extra_metrics: further corpus metrics reported next to the main one (e.g. METEOR for captioning).
        higher_is_better: direction of the main metric.
        reference_is_list: whether `answer` is a list (captions, human answers).
        judge_prompts: the judge prompt(s) of judged rules: one for `judge` / `video_chatgpt_qa`, one per
            dimension (its key) for `video_chatgpt_scores`.
        question_fields: the manifest fields that each get an answer (two for Video-ChatGPT consistency).
        max_new_tokens: default generation length.
        notes: provenance of the prompt and anything the user must know.
        fields: the manifest fields the task reads.
    """

    name: str
    title: str
    benchmarks: tuple[str, ...]
    dataset: str
    prompt: str
    prompt_verbatim: bool
    requires: tuple[str, ...]
    metric: str
    alternative_rules: tuple[str, ...] = ()
    choice_format: str | None = None
    optional_media: tuple[str, ...] = ()
    extra_metrics: tuple[str, ...] = ()
    higher_is_better: bool = True
    reference_is_list: bool = False
    judge_prompts: Mapping[str, JudgePrompt] = field(default_factory=dict)
    question_fields: tuple[str, ...] = ("question",)
    max_new_tokens: int = 64
    notes: str = ""
    fields: tuple[str, ...] = ("id", "question", "answer")

    def __post_init__(self) -> None:
        if self.metric not in RULES:
            raise ValueError(f"task {self.name}: unknown rule {self.metric!r}; rules: {', '.join(RULES)}")
        if (self.choice_format is None) == self.is_multiple_choice:
            raise ValueError(f"task {self.name}: a choice_format is needed exactly for multiple-choice tasks")
        if self.choice_format is not None and self.choice_format not in CHOICE_FORMATS:
            raise ValueError(f"task {self.name}: unknown choice format {self.choice_format!r}; "
                             f"available: {', '.join(CHOICE_FORMATS)}")

    @property
    def is_multiple_choice(self) -> bool:
        return self.metric.startswith("multiple_choice")

    @property
    def is_judged(self) -> bool:
        return self.metric in ("judge", "video_chatgpt_qa", "video_chatgpt_scores")

    def with_options(self, *, rule: str | None = None, choice_format: str | None = None) -> Task:
        """This task scored by another of its rules and/or with another multiple-choice layout."""
        changes: dict[str, Any] = {}
        if rule is not None and rule != self.metric:
            if rule not in self.alternative_rules:
                allowed = ", ".join((self.metric, *self.alternative_rules))
                raise ValueError(f"task {self.name} can be scored by {allowed}; got rule {rule!r}")
            changes["metric"] = rule
        if choice_format is not None and choice_format != self.choice_format:
            if self.choice_format is None:
                raise ValueError(f"task {self.name} is not multiple choice: it takes no choice format")
            if choice_format not in CHOICE_FORMATS:
                raise ValueError(f"unknown choice format {choice_format!r}; available: {', '.join(CHOICE_FORMATS)}")
            changes["choice_format"] = choice_format
            changes["prompt_verbatim"] = CHOICE_FORMATS[choice_format].verbatim
        return dataclasses.replace(self, **changes) if changes else self

    def format_prompt(self, sample: Mapping[str, Any], question_field: str = "question") -> str:
        """The text prompt of one manifest sample (for the answer to `question_field`)."""
        question = str(sample.get(question_field) or "").strip()
        if "{question}" in self.prompt and not question:
            raise ValueError(f"task {self.name}: sample {sample.get('id')!r} has no `{question_field}`")
        values = {"question": question}
        if "{history}" in self.prompt:
            turns = sample.get("history") or []
            values["history"] = "".join(f"Q: {q}\nA: {a}\n" for q, a in turns)
        prompt = self.prompt.format(**values)
        if self.choice_format is not None:
            choices = sample.get("choices")
            if not choices:
                raise ValueError(f"task {self.name}: sample {sample.get('id')!r} has no `choices`")
            prompt = CHOICE_FORMATS[self.choice_format].render(prompt, [str(c) for c in choices])
        return prompt

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
        if "question2" in self.question_fields:
            lines.append("  question2: the second phrasing of the question")
        if self.is_multiple_choice:
            lines.append("  choices: list of options")
        if "{history}" in self.prompt:
            lines.append("  history: list of previous [question, answer] turns")
        lines.append("  answer: " + ("list of reference strings" if self.reference_is_list else "reference string"))
        for kind in self.requires:
            lines.append(f"  {kind}: path (required)")
        for kind in self.optional_media:
            lines.append(f"  {kind}: path (optional)")
        return "\n".join(lines)


# The papers' judge prompts. QUESTION, HYPOTHESIS (the model's answer) and REFERENCE are the papers' own placeholder
# names ("Note that QUESTION refers to the question, HYPOTHESIS is the model-generated answer and REFERENCE is the
# reference answer.").
_PAPER_PLACEHOLDERS = {"QUESTION": "question", "HYPOTHESIS": "prediction", "REFERENCE": "reference"}
_JUDGE_AVSD = JudgePrompt(
    template='Given the question "QUESTION", is the answer "HYPOTHESIS" equivalent to the answer "REFERENCE"? '
    'Answer "Yes" if they are equivalent, and "No" if they are different.',
    placeholders=_PAPER_PLACEHOLDERS,
    source="FAVOR Appendix B, Table 6 (AVSD)",
    verbatim=True,
)
_JUDGE_VGGSS = JudgePrompt(
    template='Is the sound source mentioned in answer "REFERENCE" the same as the sound source mentioned in answer '
    '"HYPOTHESIS"? Answer "Yes" if they are the same, and "No" if they are different or one does not mention the '
    "sound source.",
    placeholders=_PAPER_PLACEHOLDERS,
    source="FAVOR Appendix B, Table 6 and video-SALMONN Appendix D, Table 8 (VGGSS; the same words in both)",
    verbatim=True,
)


def _video_chatgpt_qa_task(name: str, title: str, dataset: str, requires: tuple[str, ...],
                           optional: tuple[str, ...], notes: str) -> Task:
    return Task(
        name=name, title=title, benchmarks=("AV-LLM",), dataset=dataset,
        prompt="{question}", prompt_verbatim=False, requires=requires, optional_media=optional,
        metric="video_chatgpt_qa", judge_prompts={"qa": VIDEO_CHATGPT_QA}, max_new_tokens=128,
        notes="Shu et al. print no evaluation prompt: the dataset's question is sent alone. " + notes,
        fields=("id", "question", "answer", *requires, *optional),
    )


def _video_chatgpt_benchmark_task(name: str, title: str, dimensions: tuple[str, ...],
                                  question_fields: tuple[str, ...]) -> Task:
    return Task(
        name=name, title=title, benchmarks=("AV-LLM",),
        dataset="Video-ChatGPT video-based generative performance benchmark (ActivityNet-200 test videos)",
        prompt="{question}", prompt_verbatim=False, requires=("video",), optional_media=("audio",),
        metric="video_chatgpt_scores", judge_prompts={d: VIDEO_CHATGPT_DIMENSIONS[d] for d in dimensions},
        question_fields=question_fields, max_new_tokens=256,
        notes="Shu et al. Table 8: 'We follow Video-ChatGPT to report score results (1~5)'; the paper used GPT-4 as "
        "judge, Video-ChatGPT's scripts gpt-3.5-turbo (--judge-model). The question is sent alone.",
        fields=("id", *question_fields, "answer", "video", "audio"),
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
        notes="prompt from the official prompt list (prompt/alignment_speech_multitask.json); the papers print only "
        "the training example 'Transcribe the speech into text.' (FAVOR Table 5)",
        fields=("id", "answer", "audio"),
    ),
    Task(
        name="aac_audiocaps",
        title="Audio captioning",
        benchmarks=("AVEB", "SAVE", "AV-LLM"),
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
        name="aac_clotho",
        title="Audio captioning (ClothoV1)",
        benchmarks=("AV-LLM",),
        dataset="Clotho v1 evaluation",
        prompt="Describe the audio",
        prompt_verbatim=False,
        requires=("audio",),
        metric="spider",
        extra_metrics=("cider",),
        reference_is_list=True,
        notes="Shu et al. Table 3 (CIDEr, SPIDEr); the paper prints no prompt: the AudioCaps one is used",
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
        prompt="{question}",
        prompt_verbatim=CHOICE_FORMATS["favor"].verbatim,
        requires=("video",),
        optional_media=("audio",),
        metric="multiple_choice",
        alternative_rules=("multiple_choice_lenient",),
        choice_format="favor",
        max_new_tokens=32,
        notes="question and options verbatim from SAVEBench/nextqa_test.json; layout of FAVOR Table 5 (the same in "
        "video-SALMONN Table 6): " + CHOICE_FORMATS["favor"].note,
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
        prompt="{question}",
        prompt_verbatim=CHOICE_FORMATS["save"].verbatim,
        requires=("video",),
        optional_media=("audio",),
        metric="multiple_choice",
        alternative_rules=("multiple_choice_lenient",),
        choice_format="save",
        max_new_tokens=48,
        notes="question and options verbatim from SAVEBench/ego4d_qa.json; layout of video-SALMONN Figure 7",
        fields=("id", "question", "choices", "answer", "video", "audio"),
    ),
    Task(
        name="avqa_presentation_mc",
        title="AVQA (Presentation-QA)",
        benchmarks=("SAVE",),
        dataset="Presentation-QA (SAVE)",
        prompt="{question}",
        prompt_verbatim=CHOICE_FORMATS["save"].verbatim,
        requires=("video",),
        optional_media=("audio",),
        metric="multiple_choice",
        alternative_rules=("multiple_choice_lenient",),
        choice_format="save",
        max_new_tokens=48,
        notes="question and options verbatim from SAVEBench/presentation_qa.json; layout of video-SALMONN Figure 6",
        fields=("id", "question", "choices", "answer", "video", "audio"),
    ),
    Task(
        name="isqa",
        title="Image spoken QA",
        benchmarks=("AVEB",),
        dataset="ISQA (TextVQA + GQA questions spoken by TTS)",
        prompt="answer the question in the audio about the image",
        prompt_verbatim=True,
        requires=("image", "audio"),
        metric="exact_match",
        alternative_rules=("gqa",),
        max_new_tokens=64,
        notes="FAVOR §4.1: 'The text prompt is always \"answer the question in the audio about the image\"' and "
        "'The same measurement is taken for ISQA and AVM' (the answer exactly matches the reference)",
        fields=("id", "answer", "image", "audio"),
    ),
    Task(
        name="avsd",
        title="Audio-visual scene-aware dialogue",
        benchmarks=("AVEB",),
        dataset="AVSD (SAVEBench/avsd_textformat_subset.json)",
        prompt="{history}Q: {question}\nA:",
        prompt_verbatim=False,
        requires=("video",),
        optional_media=("audio",),
        metric="judge",
        judge_prompts={"judge": _JUDGE_AVSD},
        max_new_tokens=128,
        notes="one sample per dialogue turn, earlier turns in `history` (our layout: the papers print none); "
        "judge prompt verbatim from FAVOR Table 6",
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
        judge_prompts={"judge": _JUDGE_VGGSS},
        max_new_tokens=96,
        notes="question verbatim from SAVEBench/testdata_formatted.json ('What is the source of the sound?'); judge "
        "prompt verbatim from FAVOR Table 6 / video-SALMONN Table 8 (GPT-3.5-turbo)",
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
        metric="exact_match",
        alternative_rules=("yes_no",),
        max_new_tokens=32,
        notes="question verbatim from the annotation file (4 'Is the audio ...?' variants); answer Yes/No; 'The same "
        "measurement is taken for ISQA and AVM' (FAVOR §4.1, video-SALMONN App. C): an exact match",
        fields=("id", "question", "answer", "video", "image", "audio"),
    ),
    _video_chatgpt_qa_task("msvd_qa", "Open-ended video QA (MSVD-QA)", "MSVD-QA test", ("video",), ("audio",),
                           "Shu et al. Table 1."),
    _video_chatgpt_qa_task("msrvtt_qa", "Open-ended video QA (MSRVTT-QA)", "MSRVTT-QA test", ("video",), ("audio",),
                           "Shu et al. Table 1."),
    _video_chatgpt_qa_task("activitynet_qa", "Open-ended video QA (ActivityNet-QA)", "ActivityNet-QA test",
                           ("video",), ("audio",), "Shu et al. Table 1."),
    _video_chatgpt_qa_task("avllm_avsd", "Open-ended audio-visual QA (AVSD)", "AVSD val", ("video",), ("audio",),
                           "Shu et al. Table 2 (single questions, no dialogue history)."),
    _video_chatgpt_qa_task("avllm_avssd", "Open-ended audio-visual QA (AVSSD)", "VGGSS (AVSSD)", ("video",),
                           ("audio",), "Shu et al. Table 2."),
    _video_chatgpt_qa_task("music_avqa", "Open-ended audio-visual QA (MUSIC-AVQA)", "MUSIC-AVQA test", ("video",),
                           ("audio",), "Shu et al. Table 2."),
    _video_chatgpt_benchmark_task("vcgbench_generic", "Video-ChatGPT scores: correctness, detail, context",
                                  ("correctness", "detail", "context"), ("question",)),
    _video_chatgpt_benchmark_task("vcgbench_temporal", "Video-ChatGPT score: temporal understanding",
                                  ("temporal",), ("question",)),
    _video_chatgpt_benchmark_task("vcgbench_consistency", "Video-ChatGPT score: consistency",
                                  ("consistency",), ("question", "question2")),
]

TASKS: dict[str, Task] = {task.name: task for task in _TASK_LIST}


def get_task(name: str) -> Task:
    """Look a task up by name, with the list of valid names in the error."""
    try:
        return TASKS[name]
    except KeyError:
        raise KeyError(f"unknown task {name!r}; available: {', '.join(TASKS)}") from None
