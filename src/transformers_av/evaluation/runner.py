"""Run a task: batched generation streamed to JSONL (resumable), scoring, confidence intervals, summaries.

    results = generate_answers(model, processor, task, samples, output / "predictions.jsonl", media_root=...)
    summary = score(task, results, judge=...)
    write_summary(summary, output)

Every generated answer is appended to `predictions.jsonl` (and flushed) as soon as its batch is decoded, so a killed
run restarts where it stopped: samples whose id is already in the file are not generated again. Judge verdicts are
streamed the same way to `judgments.jsonl`.
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from huggingface_hub import EvalResult, ModelCard, ModelCardData
from tqdm.auto import tqdm

from . import scoring, video_chatgpt
from .data import resolve_media
from .judge import Judge, judge_verdict
from .tasks import Task

__all__ = [
    "bootstrap_interval",
    "generate_answers",
    "read_jsonl",
    "score",
    "summary_markdown",
    "write_model_index",
    "write_summary",
]


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    """Read the complete records of a JSONL file; a truncated last line (an interrupted write) is dropped."""
    path = Path(path)
    if not path.exists():
        return []
    records = []
    lines = path.read_text(encoding="utf-8").splitlines()
    for number, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            if number != len(lines) - 1:
                raise ValueError(f"{path}:{number + 1}: corrupt line (not the last one, so not an interrupted write)")
    return records


def _rewrite(path: Path, records: list[dict[str, Any]]) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    tmp.replace(path)


def _progress_bar(total: int, initial: int, description: str, enabled: bool) -> tqdm:
    """A bar showing samples done / total, samples per second and the time left (the rate counts this run's samples
    only, so a resumed run's ETA is not skewed by the samples it skipped)."""
    return tqdm(total=total, initial=initial, desc=description, unit="sample", disable=not enabled,
                dynamic_ncols=True, smoothing=0.1,
                bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt} [{elapsed}<{remaining}, {rate_fmt}]")


def generate_answers(
    model: Any,
    processor: Any,
    task: Task,
    samples: Sequence[dict[str, Any]],
    output_file: str | Path,
    *,
    media_root: str | Path | None = None,
    batch_size: int = 4,
    max_new_tokens: int | None = None,
    generation_kwargs: dict[str, Any] | None = None,
    progress: bool = True,
) -> list[dict[str, Any]]:
    """Generate the model's answer to every sample, appending one JSON record per sample to `output_file`.

    Records already in `output_file` (same id) are kept and not regenerated. Returns the records of all `samples`, in
    their order: `id`, `prompt`, `prediction`, `reference` (and `choices` / `question` when the task has them;
    `prompt2` / `prediction2` / `question2` for a task with two question fields).
    """
    output_file = Path(output_file)
    output_file.parent.mkdir(parents=True, exist_ok=True)
    done = {r["id"]: r for r in read_jsonl(output_file)}
    _rewrite(output_file, list(done.values()))  # drops a truncated last line before appending
    pending = [s for s in samples if s["id"] not in done]
    kwargs = {"do_sample": False, "num_beams": 1, **(generation_kwargs or {})}
    kwargs["max_new_tokens"] = max_new_tokens or task.max_new_tokens
    suffixes = [""] + [str(n) for n in range(2, len(task.question_fields) + 1)]  # prediction, prediction2, ...
    bar = _progress_bar(len(samples), len(samples) - len(pending), task.name, progress)
    with output_file.open("a", encoding="utf-8") as handle:
        for start in range(0, len(pending), batch_size):
            batch = pending[start : start + batch_size]
            # one generation per (sample, question field): Video-ChatGPT consistency asks two phrasings per video
            prompts = [task.format_prompt(s, f) for s in batch for f in task.question_fields]
            media = [resolve_media(s, task, media_root) for s in batch for _ in task.question_fields]
            inputs: dict[str, Any] = {"text": prompts}
            for kind, argument in (("video", "videos"), ("audio", "audio"), ("image", "images")):
                if any(kind in m for m in media):
                    inputs[argument] = [m.get(kind) for m in media]
            encoded = processor(**inputs, return_tensors="pt")
            encoded = encoded.to(model.device) if hasattr(encoded, "to") else encoded
            with torch.inference_mode():
                output = model.generate(**encoded, **kwargs)
            answers = processor.batch_decode(output[:, encoded["input_ids"].shape[1] :], skip_special_tokens=True)
            per_field = len(task.question_fields)
            for index, sample in enumerate(batch):
                record: dict[str, Any] = {"id": sample["id"]}
                for offset, suffix in enumerate(suffixes):
                    record[f"prompt{suffix}"] = prompts[index * per_field + offset]
                    record[f"prediction{suffix}"] = answers[index * per_field + offset].strip()
                record["reference"] = sample["answer"]
                for key in ("choices", *task.question_fields):
                    if key in sample:
                        record[key] = sample[key]
                done[sample["id"]] = record
                handle.write(json.dumps(record, ensure_ascii=False) + "\n")
            handle.flush()
            bar.update(len(batch))
    bar.close()
    return [done[s["id"]] for s in samples]


def bootstrap_interval(
    statistic: Callable[[list[int]], float], size: int, *, resamples: int = 1000, confidence: float = 0.95, seed: int = 0
) -> tuple[float, float]:
    """Percentile bootstrap interval of `statistic(indices)` over samples drawn with replacement (fixed seed)."""
    rng = random.Random(seed)
    values = sorted(statistic([rng.randrange(size) for _ in range(size)]) for _ in range(resamples))
    low = values[int(math.floor((1 - confidence) / 2 * resamples))]
    high = values[min(resamples - 1, int(math.ceil((1 + confidence) / 2 * resamples)) - 1)]
    return low, high


def _judge_all(
    task: Task, records: list[dict[str, Any]], judge: Judge, judgments_file: Path | None
) -> dict[str, list[str]]:
    """Ask the judge every (record, judge prompt) pair not already in `judgments_file`; returns the raw answers per
    judge prompt name, in record order. Each answer is appended to the file as soon as it arrives (resumable)."""
    stored = {(r["id"], r.get("prompt_name", "judge")): r for r in read_jsonl(judgments_file)} if judgments_file else {}
    handle = judgments_file.open("a", encoding="utf-8") if judgments_file else None
    answers: dict[str, list[str]] = {name: [] for name in task.judge_prompts}
    pairs = [(record, name) for record in records for name in task.judge_prompts]
    try:
        for record, name in tqdm(pairs, desc=f"{task.name} judge", unit="call", disable=len(pairs) < 2):
            key = (record["id"], name)
            if key not in stored:
                prompt = task.judge_prompts[name]
                reference = record["reference"]
                values = {**record, "reference": " / ".join(reference) if isinstance(reference, list) else reference}
                text = prompt.render(values)
                stored[key] = {"id": record["id"], "prompt_name": name, "judge": judge.name, "judge_system":
                               prompt.system, "judge_prompt": text, "judge_answer": judge(text, system=prompt.system)}
                if handle:
                    handle.write(json.dumps(stored[key], ensure_ascii=False) + "\n")
                    handle.flush()
            answers[name].append(stored[key]["judge_answer"])
            record["judge"] = stored[key]["judge"]
            record.setdefault("judge_answers", {})[name] = stored[key]["judge_answer"]
    finally:
        if handle:
            handle.close()
    return answers


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values)


def score(
    task: Task,
    records: list[dict[str, Any]],
    *,
    judge: Judge | None = None,
    judgments_file: str | Path | None = None,
    caption_tokenizer: str = "simple",
    resamples: int = 1000,
) -> dict[str, Any]:
    """Score generated records by the task's rule; adds a per-sample `score` to each record and returns the summary.

    The summary holds the main metric's corpus value, its 95% bootstrap interval (resampling samples; for WER the
    ratio of pooled errors to pooled words is recomputed per resample), the sample count and the extra metrics.
    """
    if not records:
        raise ValueError(f"task {task.name}: no predictions to score")
    rule = task.metric
    predictions = [r["prediction"] for r in records]
    references = [r["reference"] for r in records]
    extra: dict[str, float] = {}
    statistic: Callable[[list[int]], float]
    if task.is_judged:
        if judge is None:
            raise ValueError(
                f"task {task.name} is scored by an LLM judge: pass one (--judge-url/--judge-model, or "
                "--judge-transformers)"
            )
        answers = _judge_all(task, records, judge, Path(judgments_file) if judgments_file else None)
    if rule == "wer":
        counts = [scoring.word_errors(r, p) for p, r in zip(predictions, references)]
        for record, c in zip(records, counts):
            record["score"] = scoring.pooled_word_error_rate([c])
            record["errors"] = c.errors
        value = scoring.word_error_rate(predictions, references)["wer"]

        def statistic(indices: list[int]) -> float:
            return scoring.pooled_word_error_rate([counts[i] for i in indices])

    elif rule in ("video_chatgpt_qa", "video_chatgpt_scores"):
        value, per_sample, extra, statistic = _score_video_chatgpt(task, records, answers)
    else:
        if rule in ("cider", "spider"):
            if rule == "spider":
                result = scoring.spider(predictions, references, tokenizer=caption_tokenizer)
                per_sample, value = result["spider"].per_sample, result["spider"].score
                extra = {"cider": result["cider"].score, "spice": result["spice"].score}
            else:
                result = scoring.cider(predictions, references, tokenizer=caption_tokenizer)
                per_sample, value = result.per_sample, result.score
        elif rule == "judge":
            verdicts = [judge_verdict(a) for a in answers["judge"]]
            for record, verdict in zip(records, verdicts):
                record["verdict"] = verdict
            per_sample = [1.0 if v else 0.0 for v in verdicts]
        else:
            correct = _ANSWER_RULES[rule]
            per_sample = [float(correct(r["prediction"], r["reference"], r.get("choices"))) for r in records]
        if rule not in ("cider", "spider"):
            value = _mean(per_sample)
        for record, s in zip(records, per_sample):
            record["score"] = s

        def statistic(indices: list[int]) -> float:
            return _mean([per_sample[i] for i in indices])

        if "meteor" in task.extra_metrics:
            extra["meteor"] = scoring.meteor(predictions, references, tokenizer=caption_tokenizer).score
    low, high = bootstrap_interval(statistic, len(records), resamples=resamples)
    metric = {"wer": "wer", "cider": "cider", "spider": "spider", "video_chatgpt_scores": "score"}.get(rule, "accuracy")
    return {
        "task": task.name,
        "title": task.title,
        "dataset": task.dataset,
        "metric": metric,
        "rule": rule,
        "value": value,
        "ci95": [low, high],
        "n": len(records),
        "higher_is_better": task.higher_is_better,
        "extra": extra,
        "prompt_verbatim": task.prompt_verbatim,
        **({"choice_format": task.choice_format} if task.choice_format else {}),
        **({"judge": records[0].get("judge")} if task.is_judged else {}),
    }


# answer-matching rules: (prediction, reference, choices) -> correct
_ANSWER_RULES: dict[str, Callable[[str, Any, Any], bool | float]] = {
    "textvqa": lambda p, r, c: scoring.textvqa_accuracy(p, r),
    "gqa": lambda p, r, c: scoring.vqa_correct(p, r),
    "exact_match": lambda p, r, c: scoring.exact_match(p, r),
    "yes_no": lambda p, r, c: scoring.yes_no_correct(p, r),
    "multiple_choice": lambda p, r, c: scoring.multiple_choice_correct(p, r, c),
    "multiple_choice_lenient": lambda p, r, c: scoring.multiple_choice_lenient_correct(p, r, c),
}


def _score_video_chatgpt(
    task: Task, records: list[dict[str, Any]], answers: dict[str, list[str]]
) -> tuple[float, list[float], dict[str, float], Callable[[list[int]], float]]:
    """Video-ChatGPT's numbers from the judge's answers (see `video_chatgpt.py`).

    `video_chatgpt_qa`: value = accuracy yes / (yes + no), extra `score` = mean 0-5 score. `video_chatgpt_scores`:
    value = the mean score of the first dimension, extras = every dimension's mean score. Answers that do not parse
    are left out of the counts (reported as `unparsed`)."""
    parsed = {name: [video_chatgpt.parse_judge_dict(a) for a in texts] for name, texts in answers.items()}
    if task.metric == "video_chatgpt_qa":
        verdicts = [video_chatgpt.judged_yes(p) for p in parsed["qa"]]
        scores = [video_chatgpt.judged_score(p) for p in parsed["qa"]]
        accuracy, mean_score = video_chatgpt.qa_accuracy_and_score(verdicts, scores)
        for record, verdict, number in zip(records, verdicts, scores):
            record.update(verdict=verdict, judge_score=number, score=None if verdict is None else float(verdict))
        unparsed = sum(v is None for v in verdicts)

        def statistic(indices: list[int]) -> float:
            decided = [verdicts[i] for i in indices if verdicts[i] is not None]
            return sum(decided) / len(decided) if decided else 0.0

        return accuracy, [float(bool(v)) for v in verdicts], {"score": mean_score, "unparsed": unparsed}, statistic
    per_dimension = {name: [video_chatgpt.judged_score(p) for p in values] for name, values in parsed.items()}
    means = {}
    for name, scores in per_dimension.items():
        numbers = [s for s in scores if s is not None]
        if not numbers:
            raise ValueError(f"task {task.name}: no {name} judge answer could be parsed as {{'score': int}}")
        means[name] = _mean(numbers)
    for index, record in enumerate(records):
        record["judge_scores"] = {name: scores[index] for name, scores in per_dimension.items()}
    main = next(iter(task.judge_prompts))
    main_scores = per_dimension[main]
    for record, number in zip(records, main_scores):
        record["score"] = number

    def statistic(indices: list[int]) -> float:
        numbers = [main_scores[i] for i in indices if main_scores[i] is not None]
        return _mean(numbers) if numbers else 0.0

    unparsed = sum(s is None for scores in per_dimension.values() for s in scores)
    return means[main], [float(s or 0) for s in main_scores], {**means, "unparsed": unparsed}, statistic


def summary_markdown(summaries: Sequence[dict[str, Any]]) -> str:
    """A markdown table: task, metric, value, 95% CI, n, extra metrics."""
    lines = ["| task | metric | value | 95% CI | n | other |", "|---|---|---:|---|---:|---|"]
    for s in summaries:
        arrow = "↑" if s["higher_is_better"] else "↓"
        other = ", ".join(f"{k} {v:.4f}" for k, v in s["extra"].items())
        lines.append(
            f"| {s['task']} | {s['metric']} {arrow} | {s['value']:.4f} | [{s['ci95'][0]:.4f}, {s['ci95'][1]:.4f}] "
            f"| {s['n']} | {other} |"
        )
    return "\n".join(lines) + "\n"


def write_summary(summary: dict[str, Any], output_dir: str | Path) -> tuple[Path, Path]:
    """Write `summary.json` and `summary.md` into `output_dir`."""
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    json_path, md_path = output_dir / "summary.json", output_dir / "summary.md"
    json_path.write_text(json.dumps(summary, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    md_path.write_text(summary_markdown([summary]), encoding="utf-8")
    return json_path, md_path


def write_model_index(card_path: str | Path, model_name: str, summaries: Sequence[dict[str, Any]]) -> Path:
    """Add (or replace) the results in a model card's `model-index` metadata (README.md front matter)."""
    card_path = Path(card_path)
    card = ModelCard.load(card_path) if card_path.exists() else ModelCard("---\n---\n")
    data: ModelCardData = card.data
    data.model_name = data.model_name or model_name
    results = list(data.eval_results or [])
    for s in summaries:
        new = EvalResult(
            task_type="audio-visual-question-answering" if s["rule"] != "wer" else "automatic-speech-recognition",
            task_name=s["title"],
            dataset_type=s["task"],
            dataset_name=s["dataset"],
            metric_type=s["metric"],
            metric_name=f"{s['metric']} ({s['rule']})",
            metric_value=round(float(s["value"]), 6),
        )
        results = [r for r in results if not (r.dataset_type == new.dataset_type and r.metric_type == new.metric_type)]
        results.append(new)
    data.eval_results = results
    card_path.parent.mkdir(parents=True, exist_ok=True)
    card.save(card_path)
    return card_path
