"""Answer-matching accuracy of the AVEB / SAVE question-answering tasks.

Local `evaluate` module, one configuration per rule:
`evaluate.load(transformers_av.evaluation.metric_path("qa_accuracy"), "gqa")` (or "textvqa", "exact_match",
"multiple_choice", "multiple_choice_lenient", "yes_no"); needs no network.
"""

import evaluate

from transformers_av.evaluation import scoring

_DESCRIPTION = """Accuracy of free-form answers under the benchmark's matching rule:

* `gqa` (VQA on GQA; FAVOR §4.1, video-SALMONN Appendix C): "counted as correct if the reference answer exactly exists
  in the generated answer using word-by-word matching. It is needed to check the opposite answer doesn't exist for
  yes-or-no questions" (case and punctuation ignored).
* `textvqa` (OCR on TextVQA): the official VQA accuracy, min(#matching human answers / 3, 1) averaged over the 10
  leave-one-out subsets, after the official answer normalisation (punctuation, articles, number words, contractions).
* `exact_match` (ISQA, AVM): "one hit is counted only when the generated answer exactly matches the reference" (case,
  punctuation and spacing ignored; with several references one must match).
* `multiple_choice` (NExT-QA, Ego4D-QA, Presentation-QA): the same exact match against the reference option's text,
  as the papers count it; `multiple_choice_lenient` (this package's rule) accepts the option chosen by letter
  (`B`, `(B)`, `the answer is B`) or by its text inside a sentence, and rejects answers naming several options.
* `yes_no` (this package's rule): the reference word (yes/no) appears and its opposite does not."""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list[str]`): the model's answers.
    references: `list[str]` (gqa, exact_match, multiple_choice*, yes_no) or `list[list[str]]` (textvqa: all human
        answers).
    choices (`list[list[str]]`, multiple_choice_lenient only): the options shown in each prompt, in order (A, B...).
Returns:
    `accuracy` (float in [0, 1]) and `scores` (the per-answer scores it averages).
"""

_CITATION = """@inproceedings{sun2024videosalmonn, title={video-SALMONN: Speech-Enhanced Audio-Visual Large Language
Models}, author={Sun, Guangzhi and Yu, Wenyi and Tang, Changli and Chen, Xianzhao and Tan, Tian and Li, Wei and Lu, Lu
and Ma, Zejun and Wang, Yuxuan and Zhang, Chao}, booktitle={ICML}, year={2024}}"""

_CONFIGS = ("gqa", "textvqa", "exact_match", "multiple_choice", "multiple_choice_lenient", "yes_no")


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class QaAccuracy(evaluate.Metric):
    def _info(self) -> evaluate.MetricInfo:
        if self.config_name not in _CONFIGS:
            raise KeyError(f"qa_accuracy configuration must be one of {_CONFIGS}, got {self.config_name!r}")
        return scoring.metric_info(
            _DESCRIPTION, _CITATION, _KWARGS_DESCRIPTION, references_are_lists=self.config_name == "textvqa"
        )

    def _compute(self, predictions, references, choices=None) -> dict:
        if self.config_name == "multiple_choice_lenient":
            if choices is None or len(choices) != len(predictions):
                raise ValueError("multiple_choice_lenient needs `choices`: the list of options of every sample")
            scores = [float(scoring.multiple_choice_lenient_correct(p, r, c))
                      for p, r, c in zip(predictions, references, choices)]
        else:
            rule = {"multiple_choice": scoring.multiple_choice_correct, "textvqa": scoring.textvqa_accuracy,
                    "exact_match": scoring.exact_match, "gqa": scoring.vqa_correct,
                    "yes_no": scoring.yes_no_correct}[self.config_name]
            scores = [float(rule(p, r)) for p, r in zip(predictions, references)]
        if not scores:
            raise ValueError("nothing to score: no predictions")
        return {"accuracy": sum(scores) / len(scores), "scores": scores}
