"""Metrics of the AVEB / SAVE / AV-LLM tasks: equal to the field's reference libraries (jiwer, pycocoevalcap) on
cases written for the purpose, and to hand-worked values (derived in the comments)."""

from __future__ import annotations

import math
import re

import pytest

from transformers_av.evaluation import METRICS, load_metric, metric_path, scoring

# Tolerances here: every expected value is derived by hand from counts (WER, accuracies, CIDEr, METEOR), i.e. analytic;
# the metrics are float64 arithmetic, so pytest.approx's default rel 1e-6 only absorbs rounding. abs=1e-12 where
# another implementation evaluates the same float64 formulas (pycocoevalcap, pre-tokenised input).

# --------------------------------------------------------------------------------------------------------------- WER


def test_wer_of_a_known_pair_and_corpus_pooling():
    # Normalised: "the cat sat on the mat" vs "the cat sat on a mat": one substitution (the -> a) over 6 words.
    counts = scoring.word_errors("THE CAT SAT ON THE MAT", "The cat sat on a mat.")
    assert (counts.substitutions, counts.deletions, counts.insertions, counts.reference_words) == (1, 0, 0, 6)
    # "hello world" -> "hello there big world": two insertions over 2 words. Corpus WER pools the counts:
    # (1 + 2) / (6 + 2) = 0.375 (the mean of per-utterance WERs would be (1/6 + 1) / 2 = 0.583).
    result = scoring.word_error_rate(
        ["The cat sat on a mat.", "hello there big world"], ["THE CAT SAT ON THE MAT", "hello world"]
    )
    assert result["wer"] == pytest.approx(0.375)
    assert (result["substitutions"], result["insertions"], result["reference_words"]) == (1, 2, 8)


def test_wer_uses_the_whisper_english_normaliser():
    reference, hypothesis = "I won't paint it colour twenty five", "i will not paint it color 25"
    # Whisper's normaliser: won't -> will not, colour -> color (British spelling table), twenty five -> 25,
    # lower case: both sides become "i will not paint it color 25" -> no error.
    assert scoring.word_errors(reference, hypothesis).errors == 0
    # Without it: 7 reference words; the only matches are "paint it". Before them, (I, won't) vs (i, will, not):
    # 2 substitutions + 1 insertion; after them, (colour, twenty, five) vs (color, 25): 2 substitutions + 1 deletion.
    raw = scoring.word_errors(reference, hypothesis, normalize=False)
    assert (raw.substitutions, raw.deletions, raw.insertions, raw.reference_words) == (4, 1, 1, 7)
    assert scoring.word_error_rate([hypothesis], [reference], normalize=False)["wer"] == pytest.approx(6 / 7)


# Our own cases: (reference, hypothesis), chosen to hit every edit kind, the normaliser's rewrites and empty sides.
WER_CASES = [
    ("THE CAT SAT ON THE MAT", "The cat sat on a mat."),
    ("hello world", "hello there big world"),
    ("I won't paint it colour twenty five", "i will not paint it color 25"),
    ("a b c d e", "a c e"),
    ("a b c", "x y z w"),
    ("one two three", ""),
    ("", "something said"),
    ("uh, hmm.", "hello"),
    ("uh, hmm.", ""),
    ("Mr. Smith's 3rd car cost $5.", "mister smiths third car cost five dollars"),
    ("it's a well-known fact", "its a well known fact"),
    ("okay okay okay", "ok"),
]


def test_wer_equals_jiwer_with_the_whisper_normaliser():
    import jiwer

    norm = scoring.whisper_english_normalizer()
    for reference, hypothesis in WER_CASES:
        theirs = jiwer.process_words(norm(reference), norm(hypothesis))
        counts = scoring.word_errors(reference, hypothesis)
        assert (counts.substitutions, counts.deletions, counts.insertions) == (
            theirs.substitutions, theirs.deletions, theirs.insertions
        ), reference
        assert scoring.pooled_word_error_rate([counts]) == theirs.wer, reference
    references, hypotheses = [r for r, _ in WER_CASES], [h for _, h in WER_CASES]
    corpus = jiwer.process_words([norm(r) for r in references], [norm(h) for h in hypotheses])
    result = scoring.word_error_rate(hypotheses, references)
    assert result["wer"] == corpus.wer
    assert (result["substitutions"], result["deletions"], result["insertions"]) == (
        corpus.substitutions, corpus.deletions, corpus.insertions
    )
    # pooled counts (what the bootstrap recomputes per resample) equal jiwer's corpus WER on any subset
    counts = [scoring.word_errors(r, h) for r, h in WER_CASES]
    for subset in ([0, 1], [5, 6, 7], [6, 7, 8], [8], [2, 9, 10, 11]):
        theirs = jiwer.process_words([norm(references[i]) for i in subset], [norm(hypotheses[i]) for i in subset])
        assert scoring.pooled_word_error_rate([counts[i] for i in subset]) == theirs.wer, subset


def test_wer_on_empty_references_follows_jiwer_and_lengths_are_checked():
    # "uh, hmm." is only fillers: 0 reference words after the normaliser. jiwer's value is then the number of
    # inserted words ("hello": 1), and 0 when the hypothesis is empty too (silence transcribed as silence).
    assert scoring.word_error_rate(["hello"], ["uh, hmm."])["wer"] == 1
    assert scoring.word_error_rate([""], ["uh, hmm."])["wer"] == 0
    assert scoring.word_error_rate(["two words"], [""])["insertions"] == 2
    with pytest.raises(ValueError, match="2 predictions but 1 references"):
        scoring.word_error_rate(["a", "b"], ["a"])


# --------------------------------------------------------------------------------------------------- QA rules


def test_gqa_rule_reference_word_for_word():
    assert scoring.vqa_correct("The women are wearing a dress.", "women")  # whole word present
    assert not scoring.vqa_correct("The woman is wearing a dress.", "women")  # "woman" != "women"
    assert not scoring.vqa_correct("It is a keyboards shop", "keyboard")  # not a whole word
    assert scoring.vqa_correct("A Dakota Digital camera", "dakota digital")  # multi-word, case ignored
    assert not scoring.vqa_correct("Dakota, maybe digital", "dakota digital")  # words not consecutive


def test_yes_no_rule_opposite_must_not_appear():
    # GQA "Is it overcast?" reference "no": the answer contains "no" and not "yes" -> correct.
    assert scoring.vqa_correct("No, it is clear.", "no")
    assert not scoring.vqa_correct("Yes, no doubt it is overcast.", "no")  # both words -> wrong
    assert not scoring.vqa_correct("It is clear.", "no")  # reference word absent -> wrong
    assert not scoring.vqa_correct("Nope", "no")  # "nope" is not the word "no"
    # Audio-visual matching: the same rule on Yes/No references.
    assert scoring.yes_no_correct("Yes, the audio matches the video.", "Yes")
    assert not scoring.yes_no_correct("Yes or no, hard to say", "Yes")
    assert scoring.yes_no_correct("No. The sound is a train.", "No")
    with pytest.raises(ValueError, match="must be 'yes' or 'no'"):
        scoring.yes_no_correct("yes", "maybe")


CHOICES = ["mall", "river", "swimming pool", "living room", "mountain"]  # NExT-QA sample, reference "river"


@pytest.mark.parametrize(
    "answer, chosen",
    [
        ("river", 1),  # the option's text
        ("(B) river", 1),  # bracketed letter + text
        ("B", 1),  # the letter alone
        ("B.", 1),
        ("The answer is B.", 1),
        ("They are standing by the river.", 1),  # the text inside a sentence
        ("A river.", 1),  # sentence-initial article "A", not the letter A
        ("The answer is a river", 1),  # "is a river": the article again
        ("(A) mall", 0),
        ("A.", 0),  # the letter A
        ("It could be a river or a mall", None),  # two options named -> ambiguous
        ("a lake", None),  # no option
    ],
)
def test_lenient_multiple_choice_answer_phrasings(answer, chosen):
    assert scoring.choose_option(answer, CHOICES) == chosen
    assert scoring.multiple_choice_lenient_correct(answer, "river", CHOICES) == (chosen == 1)


@pytest.mark.parametrize(
    "answer, correct",
    [
        ("river", True),
        ("River.", True),  # case and punctuation are not part of the answer
        ("  river ", True),
        ("B", False),  # a letter is not the reference answer
        ("(B) river", False),
        ("They are standing by the river.", False),  # contains it, does not exactly match it
        ("mall", False),
    ],
)
def test_papers_multiple_choice_counts_only_an_exact_match(answer, correct):
    # FAVOR §4.1 / video-SALMONN App. C: "one hit is counted only when the generated answer exactly matches the
    # reference"
    assert scoring.multiple_choice_correct(answer, "river", CHOICES) is correct
    assert scoring.exact_match(answer, "river") is correct


def test_exact_match_with_several_references():
    assert scoring.exact_match("Dakota.", ["nous les gosses", "dakota", "dakota digital"])
    assert not scoring.exact_match("it says dakota", ["dakota", "dakota digital"])
    assert scoring.exact_match("Yes", "yes") and not scoring.exact_match("Yes, it matches.", "yes")


def test_multiple_choice_prefers_the_longer_option_containing_another():
    # "dancing hall" contains the option "hall": naming the longer one is not ambiguous.
    assert scoring.choose_option("In a dancing hall.", ["hall", "dancing hall", "road"]) == 1


# --------------------------------------------------------------------------------------------------- captions


def test_cider_hand_worked():
    # 2 samples -> log(#docs) = ln 2. Every reference n-gram occurs in one sample's references (df = 1), so
    # idf = ln 2 - ln 1 = ln 2; "d" never occurs in references (df = 0 -> log(max(1, 0)) = 0 -> weight ln 2).
    # Sample 1: hypothesis == reference "a b": cosine 1 for n = 1, 2; orders 3, 4 have no n-grams (0).
    #   10 * (1 + 1 + 0 + 0) / 4 = 5.0
    # Sample 2: "c d" vs "c e": unigrams {c, d} . {c, e} = ln2^2 / (sqrt2 ln2 * sqrt2 ln2) = 0.5; bigrams disjoint.
    #   10 * 0.5 / 4 = 1.25. Same length -> no length penalty. Corpus: (5 + 1.25) / 2 = 3.125.
    result = scoring.cider(["a b", "c d"], [["a b"], ["c e"]])
    assert result.per_sample == pytest.approx([5.0, 1.25])
    assert result.score == pytest.approx(3.125)
    # The pure-Python tokeniser drops punctuation and case: same scores.
    assert scoring.cider(["A b.", "c, D!"], [["a B"], ["C e"]]).per_sample == pytest.approx([5.0, 1.25])


# Captions with non-ASCII letters, abbreviations and clitics, where an ASCII-only tokeniser and COCO's PTB pipeline
# disagree ("café" -> caf | é, "U.S." -> u | s, "doesn't" kept whole).
UNICODE_HYPOTHESES = ["a man drinks coffee at a café", "a naïve dog plays with a ball", "the U.S. flag is waving",
                      "a woman doesn't smile at the man's dog", "a crowd cheers in Zürich's stadium"]
UNICODE_REFERENCES = [
    ["a man sits in a café with coffee", "someone drinking coffee at the café"],
    ["a naïve puppy chases a ball", "a dog playing with a red ball"],
    ["an American flag waves in the wind", "the U.S. flag flies over a building"],
    ["a woman does not smile at a dog", "the man's dog looks at a woman who doesn't smile"],
    ["fans cheer in a stadium in Zürich", "a crowd cheering at a stadium"],
]


def test_cider_equals_pycocoevalcap_on_coco_ptb_tokens():
    # Requires `java`: the reference is COCO's full pipeline, the Java PTB tokeniser then pycocoevalcap's Cider.
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    ptb = PTBTokenizer()
    gts = ptb.tokenize({i: [{"caption": r} for r in refs] for i, refs in enumerate(UNICODE_REFERENCES)})
    res = ptb.tokenize({i: [{"caption": h}] for i, h in enumerate(UNICODE_HYPOTHESES)})
    theirs, their_scores = Cider().compute_score(gts, res)
    for tokenizer in ("simple", "ptb"):  # the pure-Python default gives the same tokens, hence the same numbers
        ours = scoring.cider(UNICODE_HYPOTHESES, UNICODE_REFERENCES, tokenizer=tokenizer)
        assert ours.score == float(theirs), tokenizer
        assert ours.per_sample == [float(s) for s in their_scores], tokenizer
    # an ASCII-only tokenisation (what the default was) splits accented words and abbreviations: other numbers
    def ascii_only(text):
        return " ".join(re.findall(r"[a-z0-9]+|[^\sa-z0-9.,!?]", text.lower()))

    assert ascii_only(UNICODE_HYPOTHESES[0]) == "a man drinks coffee at a caf é"
    split = scoring.cider([ascii_only(h) for h in UNICODE_HYPOTHESES],
                          [[ascii_only(r) for r in refs] for refs in UNICODE_REFERENCES], tokenizer="none")
    assert split.score != pytest.approx(float(theirs))


def test_meteor_hand_worked():
    # Requires `java`: pycocoevalcap's Meteor runs its jar (one JVM start, ~15 s here: the only METEOR test).
    # METEOR 1.5, English defaults: alpha 0.85, beta 0.2, gamma 0.6, delta 0.75 (content vs function word weight).
    # Identical strings: P = R = 1 and one chunk covering everything -> no fragmentation penalty -> 1.0.
    # "a dog" vs "a cat sleeps": only "a" (a function word) matches.
    #   P = 0.25 * 1 / (0.75 * 1 + 0.25 * 1) = 0.25;  R = 0.25 / (0.75 * 2 + 0.25) = 1 / 7
    #   Fmean = P R / (0.85 P + 0.15 R) = 0.152672;  penalty = 0.6 * (1 chunk / 1 match) ^ 0.2 = 0.6
    #   score = 0.152672 * (1 - 0.6) = 0.061069
    result = scoring.meteor(["a man is riding a horse", "a dog"], [["a man is riding a horse"], ["a cat sleeps"]])
    p, r = 0.25, 1 / 7
    assert result.per_sample[0] == pytest.approx(1.0)
    # the Java jar's double arithmetic read back from its text output vs the hand formula (measured equal)
    assert result.per_sample[1] == pytest.approx(p * r / (0.85 * p + 0.15 * r) * 0.4, abs=1e-5)


def test_java_metrics_explain_what_is_missing(monkeypatch, tmp_path):
    monkeypatch.setattr(scoring.shutil, "which", lambda name: None)
    with pytest.raises(scoring.JavaNotFoundError, match="needs a Java runtime.*apt-get install default-jre"):
        scoring.meteor(["a"], [["a"]])
    with pytest.raises(scoring.JavaNotFoundError, match="SPICE"):
        scoring.spider(["a"], [["a"]])
    # Java present but the Stanford CoreNLP jars (not shipped by pycocoevalcap) absent:
    monkeypatch.setattr(scoring.shutil, "which", lambda name: "/usr/bin/java")
    (tmp_path / "spice" / "lib").mkdir(parents=True)
    monkeypatch.setattr(scoring, "_require_pycocoevalcap", lambda what: tmp_path)
    with pytest.raises(FileNotFoundError, match="stanford-corenlp-3.6.0.jar.*get_stanford_models"):
        scoring.spice(["a"], [["a"]])


# ------------------------------------------------------------------------------------------ evaluate modules


def test_evaluate_modules_load_offline_and_match(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_EVALUATE_OFFLINE", "1")
    assert all(metric_path(name).endswith(name) for name in METRICS)
    wer = load_metric("wer")
    assert wer.compute(predictions=["The cat sat on a mat."], references=["THE CAT SAT ON THE MAT"])["wer"] == (
        pytest.approx(1 / 6)
    )
    mc = load_metric("qa_accuracy", "multiple_choice")
    out = mc.compute(predictions=["River.", "(B) river", "B"], references=["river"] * 3)
    assert out["scores"] == [1.0, 0.0, 0.0] and out["accuracy"] == pytest.approx(1 / 3)
    lenient = load_metric("qa_accuracy", "multiple_choice_lenient")
    out = lenient.compute(predictions=["(B) river", "A.", "river or mall"], references=["river"] * 3,
                          choices=[CHOICES] * 3)
    assert out["scores"] == [1.0, 0.0, 0.0]
    textvqa = load_metric("qa_accuracy", "textvqa")
    # 2 of 10 human answers match: 8 leave-one-out subsets hold both (2/3), 2 subsets one (1/3) -> 0.6
    assert textvqa.compute(predictions=["stone"], references=[["stone", "stone"] + ["ale"] * 8])["accuracy"] == (
        pytest.approx(0.6)
    )
    exact = load_metric("qa_accuracy", "exact_match")
    assert exact.compute(predictions=["Yes.", "Yes, it does."], references=["yes", "yes"])["scores"] == [1.0, 0.0]
    gqa = load_metric("qa_accuracy", "gqa")
    assert gqa.compute(predictions=["No, it is clear.", "Yes, no doubt."], references=["no", "no"])["scores"] == [1, 0]
    yes_no = load_metric("qa_accuracy", "yes_no")
    assert yes_no.compute(predictions=["Yes."], references=["Yes"])["accuracy"] == 1.0
    cider = load_metric("cider")
    assert cider.compute(predictions=["a b", "c d"], references=[["a b"], ["c e"]])["cider"] == pytest.approx(3.125)
    with pytest.raises(KeyError, match="unknown metric"):
        metric_path("bleu")
    assert math.isfinite(cider.compute(predictions=["x"], references=[["y"]], tokenizer="none")["cider"])
