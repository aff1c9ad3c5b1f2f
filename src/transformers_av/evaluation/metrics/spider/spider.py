"""SPIDEr = (CIDEr + SPICE) / 2 for audio captioning; SPICE needs Java and the Stanford CoreNLP 3.6.0 jars.

Local `evaluate` module: `evaluate.load(transformers_av.evaluation.metric_path("spider"))`; needs no network once the
CoreNLP jars are in place (the error message says how to get them).
"""

import evaluate

from transformers_av.evaluation import scoring

_DESCRIPTION = """SPIDEr (Liu et al., 2017), the AudioCaps metric of the AVEB / SAVE audio captioning task: the mean
of CIDEr-D (pycocoevalcap's `Cider`, as in the `cider` module) and SPICE (pycocoevalcap's `Spice`, its
`spice-1.0.jar`). SPICE needs a Java
runtime and the Stanford CoreNLP 3.6.0 jars, which pycocoevalcap downloads on first use; without them the module raises
an error naming the missing piece."""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list[str]`): one caption per sample.
    references (`list[list[str]]`): the reference captions of each sample.
    tokenizer (`str`, default `"simple"`): `simple`, `ptb` (Java) or `none`.
Returns:
    `spider`, `cider`, `spice` (corpus scores) and `scores` (per-sample SPIDEr).
"""

_CITATION = """@inproceedings{liu2017spider, title={Improved Image Captioning via Policy Gradient Optimization of
SPIDEr}, author={Liu, Siqi and Zhu, Zhenhai and Ye, Ning and Guadarrama, Sergio and Murphy, Kevin}, booktitle={ICCV},
year={2017}}"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class Spider(evaluate.Metric):
    def _info(self) -> evaluate.MetricInfo:
        return scoring.metric_info(_DESCRIPTION, _CITATION, _KWARGS_DESCRIPTION, references_are_lists=True)

    def _compute(self, predictions, references, tokenizer: str = "simple") -> dict:
        result = scoring.spider(predictions, references, tokenizer=tokenizer)
        return {
            "spider": result["spider"].score,
            "cider": result["cider"].score,
            "spice": result["spice"].score,
            "scores": result["spider"].per_sample,
        }
