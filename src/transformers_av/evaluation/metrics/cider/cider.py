"""CIDEr (CIDEr-D as reported by the COCO caption toolkit), computed by pycocoevalcap's `Cider`.

Local `evaluate` module: `evaluate.load(transformers_av.evaluation.metric_path("cider"))`; needs no network and no Java
(unless `tokenizer="ptb"`).
"""

import evaluate

from transformers_av.evaluation import scoring

_DESCRIPTION = """CIDEr-D of captions against several references each (image captioning on Flickr30k, audio captioning
on AudioCaps / Clotho), computed by the COCO caption toolkit (pycocoevalcap's `Cider`: n = 1..4, sigma = 6). IDF is
computed from the references of the evaluated corpus, so evaluate the whole test set in one call.

Tokenisation: `simple` (default, pure Python, Unicode-aware, splits like the toolkit's PTB pipeline: "doesn't" ->
"does n't", "U.S." kept whole, "café" kept whole); `ptb` runs the toolkit's Java PTB tokeniser; `none` splits on
whitespace (pre-tokenised input)."""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list[str]`): one caption per sample.
    references (`list[list[str]]`): the reference captions of each sample.
    tokenizer (`str`, default `"simple"`): `simple`, `ptb` or `none`.
Returns:
    `cider` (corpus score) and `scores` (per sample).
"""

_CITATION = """@inproceedings{vedantam2015cider, title={CIDEr: Consensus-based Image Description Evaluation},
author={Vedantam, Ramakrishna and Zitnick, C. Lawrence and Parikh, Devi}, booktitle={CVPR}, year={2015}}"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class Cider(evaluate.Metric):
    def _info(self) -> evaluate.MetricInfo:
        return scoring.metric_info(_DESCRIPTION, _CITATION, _KWARGS_DESCRIPTION, references_are_lists=True)

    def _compute(self, predictions, references, tokenizer: str = "simple") -> dict:
        result = scoring.cider(predictions, references, tokenizer=tokenizer)
        return {"cider": result.score, "scores": result.per_sample}
