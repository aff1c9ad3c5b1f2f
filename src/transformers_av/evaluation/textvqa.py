"""The official VQA / TextVQA accuracy: the OCR task of AVEB and SAVE.

FAVOR §4.1 and video-SALMONN Appendix C: "For OCR, the scoring follows (Singh et al., 2019) where each hit in the
reference answer contributes 1/3 to the total hit." Singh et al. (TextVQA) score with the VQA accuracy of the EvalAI
evaluation server: both the answer and the 10 human answers are normalised (`normalize_vqa_answer`), and

    accuracy = mean over the 10 subsets of 9 human answers (leave one out) of min(#answers in the subset equal to the
    prediction / 3, 1)

so 3 matching human answers give 0.9, not 1, and 1 matching answer gives 0.3. The whole normalised answer must equal a
human answer: "the sign says stop" does not match "stop".

The normalisation reproduces the EvalAI answer processor (lower case; "," "?" removed and "'s" split off; the
punctuation list removed or replaced by a space; periods not inside numbers removed; number words zero..ten -> digits;
articles dropped; contractions without an apostrophe restored), quirks included, so scores equal the server's.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

__all__ = ["normalize_vqa_answer", "textvqa_accuracy"]

# Data tables of the VQA evaluation (answer normalisation of the VQA / TextVQA EvalAI servers).
_CONTRACTIONS = {
    "aint": "ain't", "arent": "aren't", "cant": "can't", "couldve": "could've", "couldnt": "couldn't",
    "couldn'tve": "couldn't've", "couldnt've": "couldn't've", "didnt": "didn't", "doesnt": "doesn't", "dont": "don't",
    "hadnt": "hadn't", "hadnt've": "hadn't've", "hadn'tve": "hadn't've", "hasnt": "hasn't", "havent": "haven't",
    "hed": "he'd", "hed've": "he'd've", "he'dve": "he'd've", "hes": "he's", "howd": "how'd", "howll": "how'll",
    "hows": "how's", "Id've": "I'd've", "I'dve": "I'd've", "Im": "I'm", "Ive": "I've", "isnt": "isn't", "itd": "it'd",
    "itd've": "it'd've", "it'dve": "it'd've", "itll": "it'll", "let's": "let's", "maam": "ma'am", "mightnt": "mightn't",
    "mightnt've": "mightn't've", "mightn'tve": "mightn't've", "mightve": "might've", "mustnt": "mustn't",
    "mustve": "must've", "neednt": "needn't", "notve": "not've", "oclock": "o'clock", "oughtnt": "oughtn't",
    "ow's'at": "'ow's'at", "'ows'at": "'ow's'at", "'ow'sat": "'ow's'at", "shant": "shan't", "shed've": "she'd've",
    "she'dve": "she'd've", "she's": "she's", "shouldve": "should've", "shouldnt": "shouldn't",
    "shouldnt've": "shouldn't've", "shouldn'tve": "shouldn't've", "somebody'd": "somebodyd",
    "somebodyd've": "somebody'd've", "somebody'dve": "somebody'd've", "somebodyll": "somebody'll",
    "somebodys": "somebody's", "someoned": "someone'd", "someoned've": "someone'd've", "someone'dve": "someone'd've",
    "someonell": "someone'll", "someones": "someone's", "somethingd": "something'd", "somethingd've": "something'd've",
    "something'dve": "something'd've", "somethingll": "something'll", "thats": "that's", "thered": "there'd",
    "thered've": "there'd've", "there'dve": "there'd've", "therere": "there're", "theres": "there's", "theyd": "they'd",
    "theyd've": "they'd've", "they'dve": "they'd've", "theyll": "they'll", "theyre": "they're", "theyve": "they've",
    "twas": "'twas", "wasnt": "wasn't", "wed've": "we'd've", "we'dve": "we'd've", "weve": "we've", "werent": "weren't",
    "whatll": "what'll", "whatre": "what're", "whats": "what's", "whatve": "what've", "whens": "when's",
    "whered": "where'd", "wheres": "where's", "whereve": "where've", "whod": "who'd", "whod've": "who'd've",
    "who'dve": "who'd've", "wholl": "who'll", "whos": "who's", "whove": "who've", "whyll": "why'll", "whyre": "why're",
    "whys": "why's", "wont": "won't", "wouldve": "would've", "wouldnt": "wouldn't", "wouldnt've": "wouldn't've",
    "wouldn'tve": "wouldn't've", "yall": "y'all", "yall'll": "y'all'll", "y'allll": "y'all'll",
    "yall'd've": "y'all'd've", "y'alld've": "y'all'd've", "y'all'dve": "y'all'd've", "youd": "you'd",
    "youd've": "you'd've", "you'dve": "you'd've", "youll": "you'll", "youre": "you're", "youve": "you've",
}
_NUMBER_WORDS = {"none": "0", "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5", "six": "6",
                 "seven": "7", "eight": "8", "nine": "9", "ten": "10"}
_ARTICLES = {"a", "an", "the"}
_PUNCTUATION = (";", "/", "[", "]", '"', "{", "}", "(", ")", "=", "+", "\\", "_", "-", ">", "<", "@", "`", ",", "?",
                "!")
# The server's period pattern reads "(?!<=\d)": a negative LOOKAHEAD for the text "<=" + digit (a typo for a
# lookbehind), so in practice it removes every period not followed by a digit ("3.5" stays, "end." -> "end").
_PERIOD = re.compile(r"(?!<=\d)(\.)(?!\d)")
_COMMA_BETWEEN_DIGITS = re.compile(r"(?<=\d)(,)+(?=\d)")


def _strip_punctuation(text: str) -> str:
    out = text
    # A mark next to a space, or any text with a digit-comma-digit, loses the mark; elsewhere it becomes a space.
    glued = _COMMA_BETWEEN_DIGITS.search(text) is not None
    for mark in _PUNCTUATION:
        if glued or f"{mark} " in text or f" {mark}" in text:
            out = out.replace(mark, "")
        else:
            out = out.replace(mark, " ")
    # The server passes re.UNICODE as the `count` argument of sub (= at most 32 periods removed); kept for equality.
    return _PERIOD.sub("", out, count=re.UNICODE)


def _digits_articles_contractions(text: str) -> str:
    words = [_NUMBER_WORDS.get(word, word) for word in text.lower().split()]
    words = [word for word in words if word not in _ARTICLES]
    return " ".join(_CONTRACTIONS.get(word, word) for word in words)


def normalize_vqa_answer(answer: str) -> str:
    """The EvalAI (VQA / TextVQA) answer normalisation: "Two dogs." -> "2 dogs", "The STOP sign" -> "stop sign"."""
    text = str(answer).lower().replace(",", "").replace("?", "").replace("'s", " 's").strip()
    text = text.replace("\n", " ").replace("\t", " ").strip()
    return _digits_articles_contractions(_strip_punctuation(text))


def textvqa_accuracy(prediction: str, human_answers: Sequence[str]) -> float:
    """VQA accuracy of one answer against the human answers (10 in TextVQA): the mean over the leave-one-out subsets
    of min(#matches / 3, 1), after `normalize_vqa_answer` on both sides."""
    if isinstance(human_answers, str):
        raise TypeError("textvqa_accuracy takes the list of human answers (10 in TextVQA), not a single string")
    if len(human_answers) == 0:
        raise ValueError("textvqa_accuracy needs at least one human answer")
    answer = normalize_vqa_answer(prediction)
    matches = [normalize_vqa_answer(human) == answer for human in human_answers]
    total = sum(matches)
    # Leaving out answer i removes one match exactly when answer i matches.
    return sum(min(1.0, (total - left_out) / 3.0) for left_out in matches) / len(matches)
