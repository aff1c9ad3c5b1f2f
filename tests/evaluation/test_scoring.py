"""Metrics of the AVEB / SAVE tasks on hand-worked examples (expected values derived in the comments)."""

from __future__ import annotations

import math

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


def test_wer_rejects_empty_references_and_mismatched_lengths():
    with pytest.raises(ValueError, match="no words"):
        scoring.word_error_rate(["hello"], ["uh, hmm."])  # fillers are removed by the normaliser -> 0 words
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


def test_textvqa_each_hit_counts_a_third_capped_at_one():
    # The first TextVQA sample of SAVEBench/textvqa.json: 10 human answers.
    refs = ["nous les gosses", "dakota", "clos culombu", "dakota digital", "dakota", "dakota", "dakota digital",
            "dakota digital", "dakota", "dakota"]
    assert scoring.textvqa_accuracy("nous les gosses", refs) == pytest.approx(1 / 3)  # 1 hit
    assert scoring.textvqa_accuracy("Clos Culombu.", refs) == pytest.approx(1 / 3)  # 1 hit (case/punct ignored)
    assert scoring.textvqa_accuracy("It says dakota.", refs) == 1.0  # 5 hits of "dakota" -> 5/3 capped at 1
    assert scoring.textvqa_accuracy("lager", refs) == 0.0
    refs2 = ["stone", "stone"] + ["ale"] * 8
    assert scoring.textvqa_accuracy("stone", refs2) == pytest.approx(2 / 3)  # 2 hits
    assert scoring.textvqa_accuracy("stone ale", refs2) == 1.0  # 2 + 8 hits -> capped
    with pytest.raises(TypeError):
        scoring.textvqa_accuracy("stone", "stone")


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
def test_multiple_choice_answer_phrasings(answer, chosen):
    assert scoring.choose_option(answer, CHOICES) == chosen
    assert scoring.multiple_choice_correct(answer, "river", CHOICES) == (chosen == 1)


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


def test_cider_agrees_with_pycocoevalcap():
    from pycocoevalcap.cider.cider import Cider

    hyps = ["a man is riding a horse", "two dogs play in the grass", "a woman cooks food in a kitchen",
            "children playing football", "a red car parked on the street near a building"]
    refs = [["a man rides a horse", "a person riding a brown horse on a beach"],
            ["two dogs are playing on the grass", "dogs running in a field"],
            ["a woman is cooking in the kitchen", "a lady prepares a meal", "someone cooks dinner"],
            ["kids play soccer on a field", "a group of children playing football outside"],
            ["a car on the street", "a red car is parked by a building", "a parked vehicle"]]
    ours = scoring.cider(hyps, refs, tokenizer="none")
    theirs, their_scores = Cider().compute_score({i: r for i, r in enumerate(refs)}, {i: [h] for i, h in enumerate(hyps)})
    assert ours.score == pytest.approx(float(theirs), abs=1e-12)
    assert ours.per_sample == pytest.approx([float(s) for s in their_scores], abs=1e-12)


def test_meteor_hand_worked():
    # Requires `java` (METEOR is the reference jar); without it see test_java_metrics_explain_what_is_missing.
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


def test_ptb_tokenizer_option_splits_like_the_coco_toolkit():
    # Requires `java` (the toolkit's Stanford PTB tokeniser jar ships with pycocoevalcap).
    # PTB splits contractions and possessives ("does n't", "man 's") and drops the COCO punctuation list; the
    # pure-Python default keeps "doesn't" / "man's" whole. Both lower-case and drop "." and ",".
    hypothesis, reference = "The man's dog doesn't bark.", "A man's dog, barking!"
    hyps, refs = scoring._tokenize_corpus([hypothesis], [[reference]], "ptb")
    assert hyps == [["the", "man", "'s", "dog", "does", "n't", "bark"]]
    assert refs == [[["a", "man", "'s", "dog", "barking"]]]
    simple_hyps, _ = scoring._tokenize_corpus([hypothesis], [[reference]], "simple")
    assert simple_hyps == [["the", "man's", "dog", "doesn't", "bark"]]
    # So CIDEr moves with the tokeniser: with PTB "man 's" is a shared bigram ("man 's", "'s dog") that the simple
    # tokeniser sees as "man's dog" -- scores are computed on the token lists above, and differ.
    ptb_score = scoring.cider([hypothesis, "a cat"], [[reference], ["a cat"]], tokenizer="ptb").per_sample[0]
    simple_score = scoring.cider([hypothesis, "a cat"], [[reference], ["a cat"]]).per_sample[0]
    assert ptb_score != pytest.approx(simple_score)
    # and PTB tokens fed as pre-tokenised text give the PTB score exactly
    pre = scoring.cider([" ".join(hyps[0]), "a cat"], [[" ".join(refs[0][0])], ["a cat"]], tokenizer="none")
    assert pre.per_sample[0] == pytest.approx(ptb_score, abs=1e-12)


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
    out = mc.compute(predictions=["(B) river", "A.", "river or mall"], references=["river"] * 3, choices=[CHOICES] * 3)
    assert out["scores"] == [1.0, 0.0, 0.0] and out["accuracy"] == pytest.approx(1 / 3)
    textvqa = load_metric("qa_accuracy", "textvqa")
    assert textvqa.compute(predictions=["stone"], references=[["stone", "stone"] + ["ale"] * 8])["accuracy"] == (
        pytest.approx(2 / 3)
    )
    gqa = load_metric("qa_accuracy", "gqa")
    assert gqa.compute(predictions=["No, it is clear.", "Yes, no doubt."], references=["no", "no"])["scores"] == [1, 0]
    yes_no = load_metric("qa_accuracy", "yes_no")
    assert yes_no.compute(predictions=["Yes."], references=["Yes"])["accuracy"] == 1.0
    cider = load_metric("cider")
    assert cider.compute(predictions=["a b", "c d"], references=[["a b"], ["c e"]])["cider"] == pytest.approx(3.125)
    with pytest.raises(KeyError, match="unknown metric"):
        metric_path("bleu")
    assert math.isfinite(cider.compute(predictions=["x"], references=[["y"]], tokenizer="none")["cider"])
