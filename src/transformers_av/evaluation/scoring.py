"""Offline scoring rules of the AVEB (FAVOR) and SAVE (video-SALMONN) benchmarks.

Metrics are computed by the field's libraries wherever one computes the same thing: word error rate by `jiwer` (after
the Whisper English text normaliser), CIDEr / METEOR / SPICE by the COCO caption toolkit (`pycocoevalcap`; METEOR and
SPICE run its Java jars and need `java` on the PATH, SPICE also the Stanford CoreNLP jars; each fails with a message
saying what to install). The answer-matching rules of the question-answering tasks are the papers' own (FAVOR §4.1,
video-SALMONN Appendix C) and are written here; TextVQA's official accuracy is in `textvqa.py`.

The `evaluate` modules under `transformers_av/evaluation/metrics/` are thin wrappers around these functions, so the
same numbers come out of `evaluate.load(...)`, the `transformers-av evaluate` command and a direct call.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from importlib.resources import files
from pathlib import Path

from transformers.models.whisper.english_normalizer import EnglishTextNormalizer

from .caption_tokenizer import caption_tokenize
from .textvqa import textvqa_accuracy


def metric_info(description: str, citation: str, inputs_description: str, *, references_are_lists: bool):
    """The `evaluate.MetricInfo` of this package's metric modules: string predictions, and one reference string or a
    list of them per sample."""
    import datasets  # the `eval` extra: only the metric modules, which `evaluate` itself loads, call this
    import evaluate

    string = datasets.Value("string")
    return evaluate.MetricInfo(
        description=description,
        citation=citation,
        inputs_description=inputs_description,
        features=datasets.Features(
            {"predictions": string, "references": datasets.Sequence(string) if references_are_lists else string}
        ),
    )


__all__ = [
    "metric_info",
    "CaptionScores",
    "ErrorCounts",
    "JavaNotFoundError",
    "caption_tokenize",
    "choose_option",
    "cider",
    "meteor",
    "multiple_choice_correct",
    "normalize_answer",
    "option_label",
    "spice",
    "spider",
    "exact_match",
    "multiple_choice_lenient_correct",
    "pooled_word_error_rate",
    "textvqa_accuracy",
    "vqa_correct",
    "whisper_english_normalizer",
    "word_error_rate",
    "word_errors",
    "yes_no_correct",
]


class JavaNotFoundError(RuntimeError):
    """Raised by the metrics that run a Java implementation (METEOR, SPICE, the PTB tokeniser) when Java is missing."""


# --------------------------------------------------------------------------------------------------------------------
# Word error rate
# --------------------------------------------------------------------------------------------------------------------


@lru_cache(maxsize=1)
def _english_spelling_mapping() -> dict[str, str]:
    """The British -> American spelling table used by Whisper's English normaliser.

    Looked up, in order: the JSON file named by `TRANSFORMERS_AV_ENGLISH_SPELLING` (e.g. the `normalizer.json` of any
    Whisper tokenizer folder), then the copy installed with the `whisper-normalizer` package (`eval` extra).
    """
    override = os.environ.get("TRANSFORMERS_AV_ENGLISH_SPELLING")
    if override:
        return json.loads(Path(override).read_text(encoding="utf-8"))
    try:
        return json.loads(files("whisper_normalizer").joinpath("normalizers/english.json").read_text(encoding="utf-8"))
    except (ModuleNotFoundError, FileNotFoundError) as error:
        raise ImportError(
            "WER with the Whisper English normaliser needs the British->American spelling table: install the eval "
            "extra (`pip install 'transformers-av[eval]'`, which brings `whisper-normalizer`), or set "
            "TRANSFORMERS_AV_ENGLISH_SPELLING to the `normalizer.json` of a Whisper tokenizer folder."
        ) from error


@lru_cache(maxsize=1)
def whisper_english_normalizer() -> Callable[[str], str]:
    """The Whisper English text normaliser (transformers' `EnglishTextNormalizer`) with its spelling table."""
    return EnglishTextNormalizer(_english_spelling_mapping())


@dataclass(frozen=True)
class ErrorCounts:
    """Word-level edit operations between a hypothesis and a reference (a minimum-cost alignment, from `jiwer`)."""

    substitutions: int
    deletions: int
    insertions: int
    reference_words: int

    @property
    def errors(self) -> int:
        return self.substitutions + self.deletions + self.insertions


def _wer_text(text: str, normalize: bool) -> str:
    return whisper_english_normalizer()(text) if normalize else text


def word_errors(reference: str, hypothesis: str, *, normalize: bool = True) -> ErrorCounts:
    """Count the substitutions, deletions and insertions turning `reference` into `hypothesis` (`jiwer`).

    With `normalize=True` both strings go through the Whisper English normaliser first (lower case, punctuation and
    fillers removed, numbers and British spellings standardised); otherwise they are split on whitespace as given.
    An empty reference (or one that is only fillers) has 0 words: every hypothesis word is an insertion.
    """
    import jiwer  # the `eval` extra

    out = jiwer.process_words(_wer_text(reference, normalize), _wer_text(hypothesis, normalize))
    return ErrorCounts(out.substitutions, out.deletions, out.insertions, out.hits + out.substitutions + out.deletions)


def pooled_word_error_rate(counts: Sequence[ErrorCounts]) -> float:
    """Corpus WER of per-utterance counts: pooled errors over pooled reference words.

    When the references hold no word at all, the value is the number of insertions, as `jiwer` defines it (so a
    correct empty transcription of silence scores 0). Equal to `jiwer.process_words(...).wer` on the same corpus; the
    runner uses it to recompute WER on bootstrap resamples without re-aligning.
    """
    words = sum(c.reference_words for c in counts)
    if words == 0:
        return float(sum(c.insertions for c in counts))
    return sum(c.errors for c in counts) / words


def word_error_rate(
    predictions: Sequence[str], references: Sequence[str], *, normalize: bool = True
) -> dict[str, float | int]:
    """Corpus WER from `jiwer.process_words`: all word errors divided by all reference words (not the mean of
    per-utterance WERs), after the Whisper English normaliser when `normalize`; jiwer's value on empty references."""
    import jiwer  # the `eval` extra

    _check_lengths(predictions, references)
    out = jiwer.process_words(
        [_wer_text(r, normalize) for r in references], [_wer_text(p, normalize) for p in predictions]
    )
    return {
        "wer": float(out.wer),
        "substitutions": out.substitutions,
        "deletions": out.deletions,
        "insertions": out.insertions,
        "reference_words": out.hits + out.substitutions + out.deletions,
    }


# --------------------------------------------------------------------------------------------------------------------
# Question answering rules
# --------------------------------------------------------------------------------------------------------------------

_PUNCTUATION = re.compile(r"[^\w\s']|_")


def normalize_answer(text: str) -> str:
    """Lower case, punctuation (except apostrophes inside words) -> space, whitespace collapsed."""
    text = _PUNCTUATION.sub(" ", str(text).lower())
    text = re.sub(r"(?<!\w)'|'(?!\w)", " ", text)
    return " ".join(text.split())


def _contains_words(answer: str, phrase: str) -> bool:
    """Whether the normalised `phrase` occurs in the normalised `answer` as whole consecutive words."""
    phrase = normalize_answer(phrase)
    if not phrase:
        return False
    return f" {phrase} " in f" {normalize_answer(answer)} "


_OPPOSITE = {"yes": "no", "no": "yes"}


def yes_no_correct(prediction: str, reference: str) -> bool:
    """Yes/no rule: the reference word (`yes` or `no`) appears as a word and its opposite does not."""
    ref = normalize_answer(reference)
    if ref not in _OPPOSITE:
        raise ValueError(f"a yes/no reference must be 'yes' or 'no', got {reference!r}")
    return _contains_words(prediction, ref) and not _contains_words(prediction, _OPPOSITE[ref])


def vqa_correct(prediction: str, reference: str) -> bool:
    """The papers' VQA (GQA) rule: "it is counted as correct if the reference answer exactly exists in the generated
    answer using word-by-word matching. It is needed to check the opposite answer doesn't exist for yes-or-no
    questions" (video-SALMONN Appendix C; FAVOR §4.1 and its footnote 1). Case and punctuation are ignored."""
    if normalize_answer(reference) in _OPPOSITE:
        return yes_no_correct(prediction, reference)
    return _contains_words(prediction, reference)


def exact_match(prediction: str, reference: str | Sequence[str]) -> bool:
    """The papers' Video QA / ISQA / AVM rule: "one hit is counted only when the generated answer exactly matches the
    reference" (FAVOR §4.1; video-SALMONN Appendix C). Case, punctuation and spacing are ignored (`normalize_answer`);
    with a list of references (several human answers) matching one is enough."""
    references = [reference] if isinstance(reference, str) else list(reference)
    answer = normalize_answer(prediction)
    return any(answer == normalize_answer(r) for r in references)


def option_label(index: int) -> str:
    """The letter shown before option `index` in a multiple-choice prompt: 0 -> 'A'."""
    if not 0 <= index < 26:
        raise ValueError(f"multiple choice supports at most 26 options, got index {index}")
    return chr(ord("A") + index)


def choose_option(prediction: str, choices: Sequence[str]) -> int | None:
    """Index of the option an answer chose, or None when it chose none or several.

    Accepted forms: the letter alone (`B`), bracketed or followed by `.`/`)`/`:` (`(B)`, `B.`, `B) river`), after
    `option`/`answer is`/`answer:` (`The answer is B`), or the text of exactly one option written out
    (`They are by the river.`). A bare capital `A` starting a sentence (`A river.`) is read as the article, not the
    letter. When the texts of several options occur, one that merely contains the others wins (`dancing hall` over
    `hall`); otherwise the answer is ambiguous.
    """
    letters = "".join(option_label(i) for i in range(len(choices)))
    if not letters:
        raise ValueError("multiple choice needs at least one option")
    text = prediction.strip()
    patterns = (
        rf"^\(?([{letters}])\)?[.:]?$",  # "B", "(B)", "B."
        rf"^\(([{letters}])\)",  # "(B) river"
        rf"^([{letters}])[.):]\s",  # "B. river", "B) river"
        rf"\b(?i:option|answer is|answer:|choice)\s*\(?([{letters}])\)?(?![\w'])",  # "the answer is B"
    )
    for pattern in patterns:
        match = re.search(pattern, text)
        if match:
            return letters.index(match.group(1).upper())
    found = [i for i, choice in enumerate(choices) if _contains_words(text, choice)]
    found = [
        i
        for i in found
        if not any(j != i and _contains_words(choices[j], choices[i]) and
                   normalize_answer(choices[j]) != normalize_answer(choices[i]) for j in found)
    ]
    return found[0] if len(found) == 1 else None


def multiple_choice_correct(prediction: str, reference: str, choices: Sequence[str] | None = None) -> bool:
    """The papers' multiple-choice rule (NExT-QA, Ego4D-QA, Presentation-QA): the answer must exactly match the
    reference option's text (`exact_match`; FAVOR §4.1, video-SALMONN Appendix C). `choices` is not used: a letter or
    an answer that merely contains the option is a miss, as in the papers (see `multiple_choice_lenient_correct`)."""
    return exact_match(prediction, reference)


def multiple_choice_lenient_correct(prediction: str, reference: str, choices: Sequence[str]) -> bool:
    """Lenient multiple choice (this package's own rule, not the papers'): the option the answer chose by letter or
    by text (`choose_option`) has the reference's text."""
    index = choose_option(prediction, choices)
    return index is not None and normalize_answer(choices[index]) == normalize_answer(reference)


# --------------------------------------------------------------------------------------------------------------------
# Captioning: CIDEr (pure Python), METEOR / SPICE (Java, via pycocoevalcap)
# --------------------------------------------------------------------------------------------------------------------

def _require_java(what: str) -> str:
    java = shutil.which("java")
    if java is None:
        raise JavaNotFoundError(
            f"{what} runs the reference Java implementation and needs a Java runtime (8 or newer) on the PATH, e.g. "
            "`apt-get install default-jre-headless` (Debian/Ubuntu) or `conda install -c conda-forge openjdk`."
        )
    return java


def _require_pycocoevalcap(what: str) -> Path:
    """The folder of the installed pycocoevalcap (a namespace package: no `__file__`)."""
    try:
        import pycocoevalcap  # the `eval` extra, needed by the caption metrics only
    except ModuleNotFoundError as error:
        raise ImportError(f"{what} needs pycocoevalcap: `pip install 'transformers-av[eval]'`") from error
    return Path(list(pycocoevalcap.__path__)[0])


CAPTION_TOKENIZERS = ("simple", "ptb", "none")


def _tokenize_corpus(
    predictions: Sequence[str], references: Sequence[Sequence[str]], tokenizer: str
) -> tuple[list[str], list[list[str]]]:
    """Predictions and references as space-joined token strings, the input of pycocoevalcap's scorers.

    `simple`: `caption_tokenize` (pure Python, splits like the toolkit's PTB pipeline); `ptb`: the toolkit's Java
    PTB tokeniser; `none`: the text as given (already tokenised)."""
    _check_lengths(predictions, references)
    for index, refs in enumerate(references):
        if isinstance(refs, str) or len(refs) == 0:
            raise ValueError(f"sample {index}: expected a non-empty list of reference captions, got {refs!r}")
    if tokenizer == "simple":
        return [" ".join(caption_tokenize(p)) for p in predictions], [
            [" ".join(caption_tokenize(r)) for r in refs] for refs in references
        ]
    if tokenizer == "none":
        return [" ".join(str(p).split()) for p in predictions], [[" ".join(str(r).split()) for r in refs]
                                                                 for refs in references]
    if tokenizer == "ptb":
        _require_java("The PTB tokeniser")
        _require_pycocoevalcap("The PTB tokeniser")
        from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer  # optional: checked just above

        ptb = PTBTokenizer()
        hyps = ptb.tokenize({i: [{"caption": p}] for i, p in enumerate(predictions)})
        refs = ptb.tokenize({i: [{"caption": r} for r in rs] for i, rs in enumerate(references)})
        return [hyps[i][0] for i in range(len(predictions))], [refs[i] for i in range(len(references))]
    raise ValueError(f"tokenizer must be one of {', '.join(CAPTION_TOKENIZERS)}, got {tokenizer!r}")


@dataclass(frozen=True)
class CaptionScores:
    """A corpus score and the per-sample scores it averages."""

    score: float
    per_sample: list[float]


def _coco_inputs(
    predictions: Sequence[str], references: Sequence[Sequence[str]], tokenizer: str
) -> tuple[dict[int, list[str]], dict[int, list[str]]]:
    """The (references, hypotheses) dictionaries pycocoevalcap's `compute_score(gts, res)` takes."""
    hyps, refs = _tokenize_corpus(predictions, references, tokenizer)
    return {i: list(rs) for i, rs in enumerate(refs)}, {i: [h] for i, h in enumerate(hyps)}


def cider(
    predictions: Sequence[str], references: Sequence[Sequence[str]], *, tokenizer: str = "simple"
) -> CaptionScores:
    """CIDEr-D as reported by the COCO caption toolkit ("CIDEr"): pycocoevalcap's `Cider` (n = 1..4, sigma = 6).

    IDF comes from the references of the evaluated corpus, so a score depends on the whole corpus (evaluate the whole
    test set in one call)."""
    _require_pycocoevalcap("CIDEr")
    from pycocoevalcap.cider.cider import Cider  # optional: checked above

    gts, res = _coco_inputs(predictions, references, tokenizer)
    score, per_sample = Cider().compute_score(gts, res)
    return CaptionScores(float(score), [float(s) for s in per_sample])


def meteor(
    predictions: Sequence[str], references: Sequence[Sequence[str]], *, tokenizer: str = "simple"
) -> CaptionScores:
    """METEOR 1.5 (`-l en -norm`): pycocoevalcap's `Meteor` (its jar); needs Java."""
    _require_java("METEOR")
    _require_pycocoevalcap("METEOR")
    from pycocoevalcap.meteor.meteor import Meteor  # optional: checked above

    gts, res = _coco_inputs(predictions, references, tokenizer)
    scorer = Meteor()
    try:
        score, per_sample = scorer.compute_score(gts, res)
    except ValueError as error:  # the jar printed an error instead of a score
        raise RuntimeError(f"METEOR (java) failed: {scorer.meteor_p.stderr.read()[-2000:]!r}") from error
    finally:
        del scorer  # closes the java process
    return CaptionScores(float(score), [float(s) for s in per_sample])


# SPICE 1.0 parses with Stanford CoreNLP 3.6.0, whose two jars pycocoevalcap downloads on first use (not shipped).
_CORENLP_JARS = ("stanford-corenlp-3.6.0.jar", "stanford-corenlp-3.6.0-models.jar")


def spice_jars_missing() -> list[str]:
    """The Stanford CoreNLP jars SPICE needs that are not in pycocoevalcap's `spice/lib` folder."""
    lib = _require_pycocoevalcap("SPICE") / "spice" / "lib"
    return [jar for jar in _CORENLP_JARS if not (lib / jar).exists()]


def spice(
    predictions: Sequence[str], references: Sequence[Sequence[str]], *, tokenizer: str = "simple"
) -> CaptionScores:
    """SPICE 1.0: pycocoevalcap's `Spice` (its jar); needs Java and the Stanford CoreNLP 3.6.0 jars."""
    _require_java("SPICE")
    missing = spice_jars_missing()
    if missing:
        lib = _require_pycocoevalcap("SPICE") / "spice" / "lib"
        raise FileNotFoundError(
            f"SPICE needs the Stanford CoreNLP 3.6.0 jars ({', '.join(missing)}) in {lib}; pycocoevalcap does not "
            "ship them. Download them once with network access: `python -c \"from "
            "pycocoevalcap.spice.get_stanford_models import get_stanford_models; get_stanford_models()\"`, or copy "
            "both jars from stanford-corenlp-full-2015-12-09.zip into that folder."
        )
    from pycocoevalcap.spice.spice import Spice  # optional: checked above

    gts, res = _coco_inputs(predictions, references, tokenizer)
    score, per_sample = Spice().compute_score(gts, res)
    return CaptionScores(float(score), [float(s["All"]["f"]) for s in per_sample])


def spider(
    predictions: Sequence[str], references: Sequence[Sequence[str]], *, tokenizer: str = "simple"
) -> dict[str, CaptionScores]:
    """SPIDEr = (CIDEr + SPICE) / 2 (audio captioning); returns all three."""
    spice_scores = spice(predictions, references, tokenizer=tokenizer)
    cider_scores = cider(predictions, references, tokenizer=tokenizer)
    per_sample = [(c + s) / 2 for c, s in zip(cider_scores.per_sample, spice_scores.per_sample)]
    return {
        "spider": CaptionScores((cider_scores.score + spice_scores.score) / 2, per_sample),
        "cider": cider_scores,
        "spice": spice_scores,
    }


def _check_lengths(predictions: Sequence, references: Sequence) -> None:
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions but {len(references)} references")
    if len(predictions) == 0:
        raise ValueError("nothing to score: no predictions")
