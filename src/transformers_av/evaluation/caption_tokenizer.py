"""A pure-Python caption tokeniser that splits like the COCO caption toolkit's PTB pipeline.

The COCO toolkit (pycocoevalcap) tokenises captions with the Java Stanford PTBTokenizer (`-preserveLines -lowerCase`)
and then drops the tokens of its punctuation list. CIDEr, METEOR and SPICE are computed on those tokens, so a
tokeniser that splits differently moves the scores. This module reproduces the PTB behaviour that matters in
captions without Java:

* Unicode letters are letters ("café", "naïve", "Straße" stay whole; an ASCII-only tokeniser splits them);
* abbreviations with inner periods stay whole with their periods ("U.S." -> "u.s.", "p.m."), as do common titles
  ("Mr.", "Dr.");
* clitics are split off as PTB does: "doesn't" -> "does n't", "can't" -> "ca n't", "man's" -> "man 's",
  "they're" -> "they 're"; "cannot" -> "can not", "gonna" -> "gon na";
* numbers keep their inner separators ("3.5", "1,000", "5:30"); hyphenated words and "x/y" stay whole;
* brackets become PTB's "-lrb-" / "-rrb-" (which the toolkit, comparing with upper-case names, keeps), other symbols
  ("$", "%", "&", "+") are tokens of their own, and quotes, ".", ",", "?", "!", ":", ";", "-", "--", "..." are dropped.

`tests/evaluation/test_caption_tokenizer.py` compares it with the Java tokeniser on the cases it was written for. Pass
`tokenizer="ptb"` to the caption metrics to run the Java tokeniser itself.
"""

from __future__ import annotations

import re

__all__ = ["COCO_PUNCTUATION", "caption_tokenize"]

# Tokens the COCO caption toolkit drops after PTB tokenisation (pycocoevalcap/tokenizer/ptbtokenizer.py). The bracket
# names are upper case there, while `-lowerCase` makes PTB emit them in lower case: brackets survive in the toolkit.
COCO_PUNCTUATION = frozenset(
    {"''", "'", "``", "`", "-LRB-", "-RRB-", "-LCB-", "-RCB-", ".", "?", "!", ",", ":", "-", "--", "...", ";"}
)

_BRACKETS = {"(": "-lrb-", ")": "-rrb-", "[": "-lsb-", "]": "-rsb-", "{": "-lcb-", "}": "-rcb-"}
# Abbreviations PTB keeps with their period even when a word follows (a small list of the common ones in captions).
_TITLES = ("mr", "mrs", "ms", "dr", "st", "jr", "sr", "prof", "mt", "vs", "etc", "inc", "ltd", "co")
# Words PTB splits in two.
_SPLIT_WORDS = {"cannot": ("can", "not"), "gonna": ("gon", "na"), "gotta": ("got", "ta"), "wanna": ("wan", "na"),
                "'tis": ("'t", "is"), "'twas": ("'t", "was")}
_LETTER = r"[^\W\d_]"
_WORD = r"[^\W_]"
_TOKEN = re.compile(
    rf"(?:{_LETTER}\.){{2,}}"  # u.s. / p.m. / u.s.a.
    rf"|(?:{'|'.join(_TITLES)})\.(?=\s+\w)"  # mr. smith
    rf"|'?{_WORD}+(?:(?:[-'/]|(?<=\d)[.,:](?=\d)){_WORD}+)*'?"  # words, numbers, hyphenated, clitics attached
    r"|\.\.\.|--|``|''|\S",  # multi-character punctuation, then any other single symbol
)
_CLITIC = re.compile(r"^(.+?)(n't|'s|'m|'d|'re|'ve|'ll)$")


def _split_word(token: str) -> list[str]:
    if token in _SPLIT_WORDS:
        return list(_SPLIT_WORDS[token])
    trailing_quote = token.endswith("'") and not token.endswith("n'")
    if trailing_quote:  # plural possessive "dogs'" -> "dogs" "'"
        return [*_split_word(token[:-1]), "'"]
    match = _CLITIC.match(token)
    if match and not (match.group(2) == "n't" and match.group(1).endswith("'")):
        stem = match.group(1)
        return [stem, match.group(2)] if stem else [token]
    return [token]


def caption_tokenize(text: str) -> list[str]:
    """Lower-cased caption tokens as the COCO toolkit's PTB pipeline produces them (punctuation dropped)."""
    text = str(text).lower().replace("’", "'").replace("‘", "'").replace("“", '"').replace("”", '"')
    tokens: list[str] = []
    for token in _TOKEN.findall(text):
        if token in _BRACKETS:
            tokens.append(_BRACKETS[token])
        elif re.match(_WORD, token) or (token.startswith("'") and len(token) > 1):
            tokens.extend(_split_word(token))
        elif token == '"':
            continue  # PTB turns it into `` or '', both dropped
        else:
            tokens.append(token)
    return [t for t in tokens if t not in COCO_PUNCTUATION]
