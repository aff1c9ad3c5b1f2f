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

from . import scoring
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

    Records already in `output_file` (same id) are kept and not regenerated. Returns the records of all `samples`,
    in manifest order: `id`, `prompt`, `prediction`, `reference` (and `choices` / `question` when the task has them).
    """
    output_file = Path(output_file)
    output_file.parent.mkdir(parents=True, exist_ok=True)
    done = {r["id"]: r for r in read_jsonl(output_file)}
    _rewrite(output_file, list(done.values()))  # drops a truncated last line before appending
    pending = [s for s in samples if s["id"] not in done]
    kwargs = {"do_sample": False, "num_beams": 1, **(generation_kwargs or {})}
    kwargs["max_new_tokens"] = max_new_tokens or task.max_new_tokens
    bar = tqdm(total=len(samples), initial=len(samples) - len(pending), desc=task.name, unit="sample",
               disable=not progress, dynamic_ncols=True)
    with output_file.open("a", encoding="utf-8") as handle:
        for start in range(0, len(pending), batch_size):
            batch = pending[start : start + batch_size]
            prompts = [task.format_prompt(s) for s in batch]
            media = [resolve_media(s, task, media_root) for s in batch]
            inputs: dict[str, Any] = {"text": prompts}
            for kind, argument in (("video", "videos"), ("audio", "audio"), ("image", "images")):
                if any(kind in m for m in media):
                    inputs[argument] = [m.get(kind) for m in media]
            encoded = processor(**inputs, return_tensors="pt")
            encoded = encoded.to(model.device) if hasattr(encoded, "to") else encoded
            with torch.inference_mode():
                output = model.generate(**encoded, **kwargs)
            answers = processor.batch_decode(output[:, encoded["input_ids"].shape[1] :], skip_special_tokens=True)
            for sample, prompt, answer in zip(batch, prompts, answers):
                record = {"id": sample["id"], "prompt": prompt, "prediction": answer.strip(), "reference": sample["answer"]}
                for key in ("question", "choices"):
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


def _judge_all(task: Task, records: list[dict[str, Any]], judge: Judge, judgments_file: Path | None) -> None:
    stored = {r["id"]: r for r in read_jsonl(judgments_file)} if judgments_file else {}
    handle = judgments_file.open("a", encoding="utf-8") if judgments_file else None
    try:
        for record in tqdm(records, desc=f"{task.name} judge", unit="sample", disable=len(records) < 2):
            if record["id"] not in stored:
                reference = record["reference"]
                prompt = task.judge_prompt.format(
                    question=record.get("question", ""),
                    reference=" / ".join(reference) if isinstance(reference, list) else reference,
                    prediction=record["prediction"],
                )
                raw = judge(prompt)
                stored[record["id"]] = {"id": record["id"], "judge": judge.name, "judge_prompt": prompt,
                                        "judge_answer": raw, "verdict": judge_verdict(raw)}
                if handle:
                    handle.write(json.dumps(stored[record["id"]], ensure_ascii=False) + "\n")
                    handle.flush()
            judged = stored[record["id"]]
            record.update({k: judged[k] for k in ("judge", "judge_answer", "verdict")})
    finally:
        if handle:
            handle.close()


def score(
    task: Task,
    records: list[dict[str, Any]],
    *,
    judge: Judge | None = None,
    judgments_file: str | Path | None = None,
    caption_tokenizer: str = "simple",
    resamples: int = 1000,
) -> dict[str, Any]:
    """Score generated records; adds a per-sample `score` to each record and returns the summary.

    The summary holds the main metric's corpus value, its 95% bootstrap interval (resampling samples; for WER the
    ratio of pooled errors to pooled words is recomputed per resample), the sample count and the extra metrics.
    """
    if not records:
        raise ValueError(f"task {task.name}: no predictions to score")
    predictions = [r["prediction"] for r in records]
    references = [r["reference"] for r in records]
    extra: dict[str, float] = {}
    if task.metric == "wer":
        counts = [scoring.word_errors(r, p) for p, r in zip(predictions, references)]
        for record, c in zip(records, counts):
            record["score"] = c.errors / max(1, c.reference_words)
            record["errors"] = c.errors
        words = sum(c.reference_words for c in counts)
        if words == 0:
            raise ValueError(f"task {task.name}: the references contain no words")
        value = sum(c.errors for c in counts) / words

        def statistic(indices: list[int]) -> float:
            return sum(counts[i].errors for i in indices) / max(1, sum(counts[i].reference_words for i in indices))

    else:
        if task.metric in ("cider", "spider"):
            if task.metric == "spider":
                result = scoring.spider(predictions, references, tokenizer=caption_tokenizer)
                per_sample, value = result["spider"].per_sample, result["spider"].score
                extra = {"cider": result["cider"].score, "spice": result["spice"].score}
            else:
                result = scoring.cider(predictions, references, tokenizer=caption_tokenizer)
                per_sample, value = result.per_sample, result.score
        elif task.metric == "textvqa":
            per_sample = [scoring.textvqa_accuracy(p, r) for p, r in zip(predictions, references)]
        elif task.metric == "gqa":
            per_sample = [float(scoring.vqa_correct(p, r)) for p, r in zip(predictions, references)]
        elif task.metric == "yes_no":
            per_sample = [float(scoring.yes_no_correct(p, r)) for p, r in zip(predictions, references)]
        elif task.metric == "multiple_choice":
            per_sample = [float(scoring.multiple_choice_correct(r["prediction"], r["reference"], r["choices"]))
                          for r in records]
        elif task.metric == "judge":
            if judge is None:
                raise ValueError(
                    f"task {task.name} is scored by an LLM judge: pass one (--judge-url/--judge-model, or "
                    "--judge-transformers)"
                )
            _judge_all(task, records, judge, Path(judgments_file) if judgments_file else None)
            per_sample = [1.0 if r["verdict"] else 0.0 for r in records]
        else:
            raise ValueError(f"task {task.name}: unknown metric {task.metric!r}")
        if task.metric not in ("cider", "spider"):
            value = sum(per_sample) / len(per_sample)
        for record, s in zip(records, per_sample):
            record["score"] = s

        def statistic(indices: list[int]) -> float:
            return sum(per_sample[i] for i in indices) / len(indices)

        if "meteor" in task.extra_metrics:
            extra["meteor"] = scoring.meteor(predictions, references, tokenizer=caption_tokenizer).score
    low, high = bootstrap_interval(statistic, len(records), resamples=resamples)
    return {
        "task": task.name,
        "title": task.title,
        "dataset": task.dataset,
        "metric": task.metric if task.metric not in ("gqa", "textvqa", "multiple_choice", "yes_no", "judge")
        else "accuracy",
        "rule": task.metric,
        "value": value,
        "ci95": [low, high],
        "n": len(records),
        "higher_is_better": task.higher_is_better,
        "extra": extra,
        "prompt_verbatim": task.prompt_verbatim,
        **({"judge": records[0].get("judge")} if task.metric == "judge" else {}),
    }


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
