"""The official TextVQA / VQA accuracy (the AVEB / SAVE OCR task) against values computed by hand from its definition:
accuracy = mean over the 10 leave-one-out subsets of min(#human answers in the subset equal to the answer / 3, 1),
after the official answer normalisation."""

from __future__ import annotations

import pytest

from transformers_av.evaluation.textvqa import normalize_vqa_answer, textvqa_accuracy


@pytest.mark.parametrize(
    "matching, expected",
    [
        # m of the 10 human answers match. Leaving out a matching answer leaves m - 1 matches, leaving out another
        # leaves m: accuracy = (m * min((m - 1) / 3, 1) + (10 - m) * min(m / 3, 1)) / 10.
        (0, 0.0),
        (1, 0.3),  # (1 * 0 + 9 * 1/3) / 10
        (2, 0.6),  # (2 * 1/3 + 8 * 2/3) / 10
        (3, 0.9),  # (3 * 2/3 + 7 * 1) / 10 -- not 1.0 as "3 hits x 1/3, capped" would give
        (4, 1.0),  # (4 * 1 + 6 * 1) / 10
        (10, 1.0),
    ],
)
def test_leave_one_out_average(matching, expected):
    humans = ["dakota"] * matching + [f"other {i}" for i in range(10 - matching)]
    assert textvqa_accuracy("dakota", humans) == pytest.approx(expected)


def test_official_answer_normalisation():
    # number words -> digits, articles dropped, punctuation removed, case folded, apostrophe-less contractions
    # restored -- on both the answer and the human answers
    assert normalize_vqa_answer("Two dogs.") == "2 dogs"
    assert normalize_vqa_answer("The STOP sign!") == "stop sign"
    assert normalize_vqa_answer("dont") == "don't"
    assert normalize_vqa_answer("hes here") == "he's here"
    assert normalize_vqa_answer("an apple, a pear") == "apple pear"
    assert normalize_vqa_answer("3.5") == "3.5"  # a period between digits stays
    assert normalize_vqa_answer("1,000 people") == "1000 people"
    assert normalize_vqa_answer("ten-four") == "10 4"  # "-" becomes a space, then each number word a digit
    assert normalize_vqa_answer("It's John's") == "it 's john 's"
    assert textvqa_accuracy("two", ["2"] * 10) == 1.0  # "two" -> "2": all 10 humans agree
    assert textvqa_accuracy("The Stop.", ["stop"] * 10) == 1.0


def test_the_whole_answer_must_equal_a_human_answer():
    # the papers' earlier substring reading would pass these; the official accuracy does not
    assert textvqa_accuracy("the sign says stop", ["stop"] * 10) == 0.0
    assert textvqa_accuracy("stop sign", ["stop"] * 10) == 0.0


def test_first_save_textvqa_sample():
    # SAVEBench/textvqa.json, first sample: "dakota" x5, "dakota digital" x3, "nous les gosses", "clos culombu"
    humans = ["nous les gosses", "dakota", "clos culombu", "dakota digital", "dakota", "dakota", "dakota digital",
              "dakota digital", "dakota", "dakota"]
    assert textvqa_accuracy("Dakota", humans) == 1.0  # 5 matches: every subset keeps >= 4
    assert textvqa_accuracy("dakota digital", humans) == pytest.approx(0.9)  # 3 matches
    assert textvqa_accuracy("nous les gosses", humans) == pytest.approx(0.3)  # 1 match
    assert textvqa_accuracy("It says dakota.", humans) == 0.0
    with pytest.raises(TypeError, match="list of human answers"):
        textvqa_accuracy("dakota", "dakota")
    with pytest.raises(ValueError, match="at least one human answer"):
        textvqa_accuracy("dakota", [])
