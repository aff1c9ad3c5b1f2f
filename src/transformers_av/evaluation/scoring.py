"""Offline scoring rules of the AVEB (FAVOR) and SAVE (video-SALMONN) benchmarks.

Everything here is plain Python (no network, no Hub): word error rate with the Whisper English text normaliser, the
answer-matching rules of the question-answering tasks, and CIDEr. METEOR and SPICE (hence SPIDEr) run the reference Java
implementations shipped with `pycocoevalcap`; they need `java` on the PATH and fail with a message saying what to
install otherwise.

The `evaluate` modules under `transformers_av/evaluation/metrics/` are thin wrappers around these functions, so the
same numbers come out of `evaluate.load(...)`, the `transformers-av evaluate` command and a direct call.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import subprocess
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from importlib.resources import files
from pathlib import Path

from transformers.models.whisper.english_normalizer import EnglishTextNormalizer


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
    """Word-level edit operations between a hypothesis and a reference (minimum total, Levenshtein)."""

    substitutions: int
    deletions: int
    insertions: int
    reference_words: int

    @property
    def errors(self) -> int:
        return self.substitutions + self.deletions + self.insertions


def word_errors(reference: str, hypothesis: str, *, normalize: bool = True) -> ErrorCounts:
    """Count the substitutions, deletions and insertions turning `reference` into `hypothesis`.

    With `normalize=True` both strings go through the Whisper English normaliser first (lower case, punctuation and
    fillers removed, numbers and British spellings standardised); otherwise they are split on whitespace as given.
    """
    if normalize:
        norm = whisper_english_normalizer()
        reference, hypothesis = norm(reference), norm(hypothesis)
    ref, hyp = reference.split(), hypothesis.split()
    # cost[j] = (total, subs, dels, ins) for ref[:i] -> hyp[:j]; ties prefer substitutions, then deletions.
    previous = [(j, 0, 0, j) for j in range(len(hyp) + 1)]
    for i in range(1, len(ref) + 1):
        current = [(i, 0, i, 0)]
        for j in range(1, len(hyp) + 1):
            if ref[i - 1] == hyp[j - 1]:
                best = previous[j - 1]
            else:
                t, s, d, n = previous[j - 1]
                best = (t + 1, s + 1, d, n)
            t, s, d, n = previous[j]
            if t + 1 < best[0]:
                best = (t + 1, s, d + 1, n)
            t, s, d, n = current[j - 1]
            if t + 1 < best[0]:
                best = (t + 1, s, d, n + 1)
            current.append(best)
        previous = current
    _, subs, dels, ins = previous[-1]
    return ErrorCounts(subs, dels, ins, len(ref))


def word_error_rate(
    predictions: Sequence[str], references: Sequence[str], *, normalize: bool = True
) -> dict[str, float | int]:
    """Corpus WER: all word errors divided by all reference words (not the mean of per-utterance WERs)."""
    _check_lengths(predictions, references)
    counts = [word_errors(r, p, normalize=normalize) for p, r in zip(predictions, references)]
    words = sum(c.reference_words for c in counts)
    if words == 0:
        raise ValueError("WER is undefined: the references contain no words (after normalisation)")
    return {
        "wer": sum(c.errors for c in counts) / words,
        "substitutions": sum(c.substitutions for c in counts),
        "deletions": sum(c.deletions for c in counts),
        "insertions": sum(c.insertions for c in counts),
        "reference_words": words,
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
    """GQA rule: the reference appears word-for-word in the answer; for yes/no references the opposite must not."""
    if normalize_answer(reference) in _OPPOSITE:
        return yes_no_correct(prediction, reference)
    return _contains_words(prediction, reference)


def textvqa_accuracy(prediction: str, references: Sequence[str]) -> float:
    """TextVQA rule: each human reference answer found word-for-word in the answer counts 1/3; capped at 1."""
    if isinstance(references, str):
        raise TypeError("textvqa_accuracy takes the list of human answers (10 in TextVQA), not a single string")
    hits = sum(_contains_words(prediction, ref) for ref in references)
    return min(1.0, hits / 3.0)


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


def multiple_choice_correct(prediction: str, reference: str, choices: Sequence[str]) -> bool:
    """Exact match of the chosen option's text with the reference answer (after `normalize_answer`)."""
    index = choose_option(prediction, choices)
    return index is not None and normalize_answer(choices[index]) == normalize_answer(reference)


# --------------------------------------------------------------------------------------------------------------------
# Captioning: CIDEr (pure Python), METEOR / SPICE (Java, via pycocoevalcap)
# --------------------------------------------------------------------------------------------------------------------

# Tokens the COCO caption evaluation drops after PTB tokenisation.
_CAPTION_PUNCTUATION = {"''", "'", "``", "`", ".", "?", "!", ",", ":", "-", "--", "...", ";"}
_CAPTION_TOKEN = re.compile(r"[a-z0-9]+(?:['’][a-z0-9]+)*|[^\sa-z0-9]")


def caption_tokenize(text: str) -> list[str]:
    """Pure-Python caption tokeniser: lower case, punctuation split off and dropped.

    The COCO caption toolkit (pycocoevalcap) uses the Java Stanford PTB tokeniser instead. The two agree on plain
    captions; they differ on contractions and possessives (PTB: `do n't`, `man 's`; here: `don't`, `man's`) and on a
    few symbols, which can move CIDEr by a small amount. Pass `tokenizer="ptb"` to the caption metrics to use PTB
    (needs Java) for numbers strictly comparable with papers that used the toolkit.
    """
    tokens = _CAPTION_TOKEN.findall(str(text).lower().replace("’", "'"))
    return [t for t in tokens if t not in _CAPTION_PUNCTUATION and re.search(r"\w", t)]


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


def _tokenize_corpus(
    predictions: Sequence[str], references: Sequence[Sequence[str]], tokenizer: str
) -> tuple[list[list[str]], list[list[list[str]]]]:
    _check_lengths(predictions, references)
    for refs in references:
        if isinstance(refs, str) or len(refs) == 0:
            raise ValueError("each sample needs a non-empty list of reference captions")
    if tokenizer == "simple":
        return [caption_tokenize(p) for p in predictions], [[caption_tokenize(r) for r in refs] for refs in references]
    if tokenizer == "none":
        return [str(p).split() for p in predictions], [[str(r).split() for r in refs] for refs in references]
    if tokenizer == "ptb":
        _require_java("The PTB tokeniser")
        _require_pycocoevalcap("The PTB tokeniser")
        from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer  # optional: checked just above

        ptb = PTBTokenizer()
        hyps = ptb.tokenize({i: [{"caption": p}] for i, p in enumerate(predictions)})
        refs = ptb.tokenize({i: [{"caption": r} for r in rs] for i, rs in enumerate(references)})
        return [hyps[i][0].split() for i in range(len(predictions))], [
            [r.split() for r in refs[i]] for i in range(len(references))
        ]
    raise ValueError(f"tokenizer must be 'simple', 'ptb' or 'none', got {tokenizer!r}")


@dataclass(frozen=True)
class CaptionScores:
    """A corpus score and the per-sample scores it averages."""

    score: float
    per_sample: list[float]


def _ngram_counts(words: Sequence[str], max_n: int) -> Counter:
    return Counter(tuple(words[i : i + n]) for n in range(1, max_n + 1) for i in range(len(words) - n + 1))


def cider(
    predictions: Sequence[str],
    references: Sequence[Sequence[str]],
    *,
    max_n: int = 4,
    sigma: float = 6.0,
    tokenizer: str = "simple",
) -> CaptionScores:
    """CIDEr-D as computed by the COCO caption toolkit ("CIDEr" in its reports), in plain Python.

    Per n-gram order n (1..4): TF-IDF vectors where a term's document frequency is the number of samples whose
    reference set contains it (IDF = log(#samples) - log(max(1, df))); the similarity of the hypothesis to each
    reference is the dot product of the hypothesis weights clipped at the reference weights with the reference weights,
    over the product of the norms, times the length penalty exp(-(len_hyp - len_ref)^2 / (2 sigma^2)). The sample score
    is 10 x the mean over orders and references; the corpus score the mean over samples. IDF comes from the references
    of the evaluated corpus, so a score depends on the whole corpus (as in the toolkit).
    """
    hyps, refs = _tokenize_corpus(predictions, references, tokenizer)
    hyp_counts = [_ngram_counts(h, max_n) for h in hyps]
    ref_counts = [[_ngram_counts(r, max_n) for r in rs] for rs in refs]
    document_frequency: Counter = Counter()
    for counts in ref_counts:
        document_frequency.update(set().union(*counts))
    log_documents = math.log(float(len(refs)))

    def weights(counts: Counter) -> tuple[list[dict], list[float]]:
        vectors: list[dict] = [{} for _ in range(max_n)]
        norms = [0.0] * max_n
        for gram, tf in counts.items():
            w = tf * (log_documents - math.log(max(1.0, document_frequency[gram])))
            vectors[len(gram) - 1][gram] = w
            norms[len(gram) - 1] += w * w
        return vectors, [math.sqrt(v) for v in norms]

    per_sample = []
    for hyp_words, hyp, ref_words_list, ref_list in zip(hyps, hyp_counts, refs, ref_counts):
        h_vec, h_norm = weights(hyp)
        total = 0.0
        for ref_words, ref in zip(ref_words_list, ref_list):
            r_vec, r_norm = weights(ref)
            penalty = math.exp(-((len(hyp_words) - len(ref_words)) ** 2) / (2 * sigma**2))
            for n in range(max_n):
                dot = sum(min(w, r_vec[n].get(g, 0.0)) * r_vec[n].get(g, 0.0) for g, w in h_vec[n].items())
                if h_norm[n] > 0 and r_norm[n] > 0:
                    total += dot / (h_norm[n] * r_norm[n]) * penalty
        per_sample.append(10.0 * total / max_n / len(ref_list))
    return CaptionScores(sum(per_sample) / len(per_sample), per_sample)


def meteor(
    predictions: Sequence[str], references: Sequence[Sequence[str]], *, tokenizer: str = "simple"
) -> CaptionScores:
    """METEOR 1.5 (`-l en -norm`) from pycocoevalcap's jar; needs Java."""
    _require_java("METEOR")
    package = _require_pycocoevalcap("METEOR")
    hyps, refs = _tokenize_corpus(predictions, references, tokenizer)
    jar_dir = package / "meteor"
    process = subprocess.Popen(
        ["java", "-jar", "-Xmx2G", "meteor-1.5.jar", "-", "-", "-stdio", "-l", "en", "-norm"],
        cwd=jar_dir, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        stats = []
        for hyp, rs in zip(hyps, refs):
            clean = [" ".join(r).replace("|||", "") for r in rs]
            process.stdin.write(" ||| ".join(["SCORE", *clean, " ".join(hyp).replace("|||", "")]) + "\n")
            process.stdin.flush()
            stats.append(process.stdout.readline().strip())
        process.stdin.write("EVAL ||| " + " ||| ".join(stats) + "\n")
        process.stdin.flush()
        per_sample = [float(process.stdout.readline()) for _ in stats]
        score = float(process.stdout.readline())
    except (ValueError, BrokenPipeError) as error:
        raise RuntimeError(f"METEOR (java) failed: {process.stderr.read()[-2000:]}") from error
    finally:
        process.kill()
        process.wait()
    return CaptionScores(score, per_sample)


_CORENLP_JARS = ("stanford-corenlp-3.6.0.jar", "stanford-corenlp-3.6.0-models.jar")


def spice(
    predictions: Sequence[str], references: Sequence[Sequence[str]], *, tokenizer: str = "simple"
) -> CaptionScores:
    """SPICE 1.0 from pycocoevalcap's jar; needs Java and the Stanford CoreNLP 3.6.0 jars."""
    _require_java("SPICE")
    package = _require_pycocoevalcap("SPICE")
    lib = package / "spice" / "lib"
    missing = [jar for jar in _CORENLP_JARS if not (lib / jar).exists()]
    if missing:
        raise FileNotFoundError(
            f"SPICE needs the Stanford CoreNLP 3.6.0 jars ({', '.join(missing)}) in {lib}; pycocoevalcap does not "
            "ship them. Download them once with network access: `python -c \"from "
            "pycocoevalcap.spice.get_stanford_models import get_stanford_models; get_stanford_models()\"`, or copy "
            "both jars from stanford-corenlp-full-2015-12-09.zip into that folder."
        )
    from pycocoevalcap.spice.spice import Spice  # optional: checked above

    hyps, refs = _tokenize_corpus(predictions, references, tokenizer)
    score, per_sample = Spice().compute_score(
        {i: [" ".join(r) for r in rs] for i, rs in enumerate(refs)}, {i: [" ".join(h)] for i, h in enumerate(hyps)}
    )
    return CaptionScores(float(score), [float(s) for s in per_sample])


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
