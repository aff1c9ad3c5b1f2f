"""METEOR 1.5 (the COCO caption toolkit's jar); needs Java.

Local `evaluate` module: `evaluate.load(transformers_av.evaluation.metric_path("meteor"))`; needs no network.
"""

import evaluate

from transformers_av.evaluation import scoring

_DESCRIPTION = """METEOR 1.5 (`-l en -norm`) computed by pycocoevalcap's `meteor-1.5.jar`, as reported for image
captioning. Requires a Java runtime on the PATH; without one it raises `JavaNotFoundError` saying what to install."""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list[str]`): one caption per sample.
    references (`list[list[str]]`): the reference captions of each sample.
    tokenizer (`str`, default `"simple"`): `simple`, `ptb` (Java) or `none`.
Returns:
    `meteor` (corpus score from the pooled statistics) and `scores` (per sample).
"""

_CITATION = """@inproceedings{denkowski2014meteor, title={Meteor Universal: Language Specific Translation Evaluation
for Any Target Language}, author={Denkowski, Michael and Lavie, Alon}, booktitle={WMT}, year={2014}}"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class Meteor(evaluate.Metric):
    def _info(self) -> evaluate.MetricInfo:
        return scoring.metric_info(_DESCRIPTION, _CITATION, _KWARGS_DESCRIPTION, references_are_lists=True)

    def _compute(self, predictions, references, tokenizer: str = "simple") -> dict:
        result = scoring.meteor(predictions, references, tokenizer=tokenizer)
        return {"meteor": result.score, "scores": result.per_sample}
