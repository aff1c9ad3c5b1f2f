"""Answer-matching accuracy of the AVEB / SAVE question-answering tasks.

Local `evaluate` module, one configuration per rule:
`evaluate.load(transformers_av.evaluation.metric_path("qa_accuracy"), "gqa")` (or "textvqa", "multiple_choice",
"yes_no"); needs no network.
"""

import evaluate

from transformers_av.evaluation import scoring

_DESCRIPTION = """Accuracy of free-form answers under the benchmark's matching rule:

* `gqa` (VQA on GQA): correct when the reference appears word-for-word in the answer (case and punctuation ignored);
  for a yes/no reference the opposite word must not appear.
* `textvqa` (OCR on TextVQA): each of the human reference answers found word-for-word in the answer counts 1/3,
  capped at 1.
* `multiple_choice` (NExT-QA, Ego4D-QA, Presentation-QA): the option the answer chose (by letter, `(B)`, `B.`,
  `the answer is B`, or the option's text written out) must be the reference; an answer naming several options is
  wrong.
* `yes_no` (audio-visual matching): the reference word (yes/no) appears and its opposite does not."""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list[str]`): the model's answers.
    references: `list[str]` (gqa, multiple_choice, yes_no) or `list[list[str]]` (textvqa: all human answers).
    choices (`list[list[str]]`, multiple_choice only): the options shown in each prompt, in order (A, B, C...).
Returns:
    `accuracy` (float in [0, 1]) and `scores` (the per-answer scores it averages).
"""

_CITATION = """@inproceedings{sun2024videosalmonn, title={video-SALMONN: Speech-Enhanced Audio-Visual Large Language
Models}, author={Sun, Guangzhi and Yu, Wenyi and Tang, Changli and Chen, Xianzhao and Tan, Tian and Li, Wei and Lu, Lu
and Ma, Zejun and Wang, Yuxuan and Zhang, Chao}, booktitle={ICML}, year={2024}}"""

_CONFIGS = ("gqa", "textvqa", "multiple_choice", "yes_no")


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class QaAccuracy(evaluate.Metric):
    def _info(self) -> evaluate.MetricInfo:
        if self.config_name not in _CONFIGS:
            raise KeyError(f"qa_accuracy configuration must be one of {_CONFIGS}, got {self.config_name!r}")
        return scoring.metric_info(
            _DESCRIPTION, _CITATION, _KWARGS_DESCRIPTION, references_are_lists=self.config_name == "textvqa"
        )

    def _compute(self, predictions, references, choices=None) -> dict:
        if self.config_name == "multiple_choice":
            if choices is None or len(choices) != len(predictions):
                raise ValueError("multiple_choice needs `choices`: the list of options of every sample")
            scores = [float(scoring.multiple_choice_correct(p, r, c)) for p, r, c in zip(predictions, references, choices)]
        elif self.config_name == "textvqa":
            scores = [scoring.textvqa_accuracy(p, r) for p, r in zip(predictions, references)]
        elif self.config_name == "gqa":
            scores = [float(scoring.vqa_correct(p, r)) for p, r in zip(predictions, references)]
        else:
            scores = [float(scoring.yes_no_correct(p, r)) for p, r in zip(predictions, references)]
        if not scores:
            raise ValueError("nothing to score: no predictions")
        return {"accuracy": sum(scores) / len(scores), "scores": scores}
