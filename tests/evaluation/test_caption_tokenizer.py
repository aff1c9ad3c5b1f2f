"""The pure-Python caption tokeniser against the COCO caption toolkit's pipeline (the Java Stanford PTBTokenizer of
pycocoevalcap, then its punctuation filter). Requires `java`."""

from __future__ import annotations

from transformers_av.evaluation.caption_tokenizer import caption_tokenize

# Cases written for the purpose: non-ASCII letters, abbreviations, clitics, numbers, brackets, quotes and symbols.
CASES = [
    "A man at the café.", "A naïve dog's toy.", "The U.S. flag waves.", "He doesn't know, can't go!",
    "It's 3.5 m long; 1,000 people", "A well-known man's (big) hat", "Jürgen's Straße übermäßig",
    "Dogs' bowls and cats'", "I'm you're we'll they'd I've", 'A "quoted" word -- dash', "e-mail at 5:30 p.m. today",
    "Mr. Smith and Dr. Who", "ÉCOLE Ça va?", "A 10-year-old boy", "The end...", "cannot gonna wanna", "O'Neil's pub",
    "a $5 bill & 50% off", "x/y a+b", "l'école", "2nd place", "the U.S.A. team", "'tis the season", "naïve",
    "café au lait", "Zürich", "A man won't stop; he's riding a bike.", "Two dogs [playing] {outside}",
    "A woman’s hat", "Children's toys at 3 p.m.", "A dog, a cat, and a bird!", "People in the U.S.",
    "Birds chirp while a car passes by", "An engine revs up - then idles", "Rain falls on a tin roof...",
    'Someone says: "hello there"', "Water is flowing; wind blows", "a man speaks, then a woman speaks",
    "A train horn honks twice!", "two men talk about 2:1 odds", "the co-op's garden",
    "A man is speaking Español in São Paulo", "A crowd cheers at Zürich's stadium", "He said no. Then he left",
    "Visit St. Louis today", "apples, pears etc. are sold", "a dog vs. a cat", "Prof. Lee talks", "a man. a woman",
]


def test_tokens_equal_the_coco_ptb_pipeline():
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    ptb = PTBTokenizer().tokenize({i: [{"caption": c}] for i, c in enumerate(CASES)})
    for i, caption in enumerate(CASES):
        assert caption_tokenize(caption) == ptb[i][0].split(), caption


def test_the_cases_the_ascii_tokeniser_got_wrong():
    assert caption_tokenize("A man at the café.") == ["a", "man", "at", "the", "café"]
    assert caption_tokenize("A naïve dog's toy.") == ["a", "naïve", "dog", "'s", "toy"]
    assert caption_tokenize("The U.S. flag") == ["the", "u.s.", "flag"]
    assert caption_tokenize("He doesn't know, can't go!") == ["he", "does", "n't", "know", "ca", "n't", "go"]
