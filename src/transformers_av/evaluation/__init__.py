"""Benchmark tasks, metrics, LLM judges and the evaluation runner of the three papers (AVEB / SAVE / AV-LLM).

The metrics are also local `evaluate` modules::

    import evaluate
    from transformers_av.evaluation import metric_path

    wer = evaluate.load(metric_path("wer"))
    accuracy = evaluate.load(metric_path("qa_accuracy"), "multiple_choice")

`metric_path(name)` is the folder of the module script inside the installed package (no Hub access).
"""

from __future__ import annotations

from pathlib import Path

from .tasks import TASKS, Task, get_task

METRICS = ("wer", "qa_accuracy", "cider", "meteor", "spider")

__all__ = ["METRICS", "TASKS", "Task", "get_task", "load_metric", "metric_path"]


def metric_path(name: str) -> str:
    """The local folder of the `evaluate` module `name` (one of `METRICS`), for `evaluate.load(path)`."""
    if name not in METRICS:
        raise KeyError(f"unknown metric {name!r}; available: {', '.join(METRICS)}")
    return str(Path(__file__).parent / "metrics" / name)


def load_metric(name: str, config_name: str | None = None, **kwargs):
    """`evaluate.load` of one of the packaged metric modules (offline)."""
    import evaluate  # the `eval` extra: needed only to load a metric

    return evaluate.load(metric_path(name), config_name, **kwargs)
