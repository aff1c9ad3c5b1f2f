"""Word error rate with the Whisper English text normaliser (ASR on LibriSpeech, AVSR on How2).

Local `evaluate` module: `evaluate.load(transformers_av.evaluation.metric_path("wer"))`; needs no network.
"""

import evaluate

from transformers_av.evaluation import scoring

_DESCRIPTION = """Corpus word error rate computed by `jiwer`: (substitutions + deletions + insertions) over all
reference words, after both sides go through Whisper's English text normaliser (lower case, punctuation and fillers
removed, numbers and British spellings standardised), as in the Whisper paper and the AVEB / SAVE ASR and AVSR tasks.
References with no word at all (empty, or only fillers) follow jiwer: the value is then the number of inserted
words."""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list[str]`): transcriptions produced by the model.
    references (`list[str]`): reference transcriptions.
    normalize (`bool`, default `True`): apply the Whisper English normaliser; `False` splits the text as given.
Returns:
    `wer` (float, lower is better), `substitutions`, `deletions`, `insertions`, `reference_words`.
Example:
    >>> wer = evaluate.load(metric_path("wer"))
    >>> wer.compute(predictions=["the cat sat on a mat"], references=["THE CAT SAT ON THE MAT"])["wer"]
    0.16666666666666666
"""

_CITATION = """@inproceedings{radford2023whisper, title={Robust Speech Recognition via Large-Scale Weak Supervision},
author={Radford, Alec and Kim, Jong Wook and Xu, Tao and Brockman, Greg and McLeavey, Christine and Sutskever, Ilya},
booktitle={ICML}, year={2023}}"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class Wer(evaluate.Metric):
    def _info(self) -> evaluate.MetricInfo:
        return scoring.metric_info(_DESCRIPTION, _CITATION, _KWARGS_DESCRIPTION, references_are_lists=False)

    def _compute(self, predictions, references, normalize: bool = True) -> dict:
        return scoring.word_error_rate(predictions, references, normalize=normalize)
