"""`transformers-av evaluate`: run an AVEB / SAVE / AV-LLM task on a model and write per-sample results and a summary.

    transformers-av evaluate --model PATH_OR_ID --task nextqa_mc --data manifest.jsonl --media-root DIR --output results/
    transformers-av evaluate --list-tasks                       # tasks, metrics and the manifest fields each reads
    transformers-av evaluate --task nextqa_mc --convert-save nextqa_test.json --data manifest.jsonl   # SAVE -> manifest
    accelerate launch --num_processes 8 -m transformers_av.cli evaluate --device cuda ...   # one shard per process

Outputs in `--output`: `predictions.jsonl` (streamed; rerun the same command to resume; `predictions.rank{i}.jsonl`
per process under `accelerate launch`), `judgments.jsonl` (judged tasks: the judge's raw answer per sample),
`results.jsonl` (per-sample scores), `summary.json` and `summary.md`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import torch
from accelerate import PartialState
from transformers import AutoModelForMultimodalLM, AutoProcessor

from .data import convert_save_annotations, load_manifest, write_jsonl
from .judge import OpenAICompatibleJudge, TransformersJudge
from .runner import generate_answers, score, write_model_index, write_summary
from .scoring import CAPTION_TOKENIZERS
from .sharding import merge_in_manifest_order, predictions_file, read_all_predictions, shard
from .tasks import CHOICE_FORMATS, RULES, TASKS, get_task
from .validate import checked_samples


def add_evaluate_arguments(parser: argparse.ArgumentParser) -> None:
    """Declare the options of the `evaluate` subcommand on `parser`."""
    parser.add_argument("--model", help="a converted/trained model folder or Hub id")
    parser.add_argument("--task", choices=sorted(TASKS), help="the task to run (see --list-tasks)")
    parser.add_argument("--data", help="manifest: .jsonl, .json, .csv, .parquet or a datasets folder")
    parser.add_argument("--media-root", help="folder the manifest's media paths are relative to")
    parser.add_argument("--output", help="results folder (rerun with the same folder to resume)")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--max-new-tokens", type=int, help="default: the task's")
    parser.add_argument("--num-beams", type=int, default=1, help="1 = greedy (the official decoding used 5)")
    parser.add_argument("--limit", type=int, help="evaluate only the first N samples")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ...")
    parser.add_argument("--dtype", default="auto", choices=["auto", "float32", "float16", "bfloat16"])
    parser.add_argument("--caption-tokenizer", default="simple", choices=CAPTION_TOKENIZERS,
                        help="caption tokenisation for CIDEr/METEOR/SPICE: simple (Python, splits like the COCO "
                        "toolkit's PTB), ptb (the toolkit's Java tokeniser) or none (pre-tokenised)")
    parser.add_argument("--rule", choices=sorted(RULES),
                        help="score by another rule the task allows (e.g. multiple_choice_lenient); default: the "
                        "paper's")
    parser.add_argument("--choice-format", choices=sorted(CHOICE_FORMATS),
                        help="multiple-choice layout: favor (FAVOR Table 5), save (video-SALMONN Figures 6-7) or "
                        "letters (ours); default: the layout of the paper the task belongs to")
    judge = parser.add_argument_group("LLM judge (avsd, avssd, the AV-LLM open-ended tasks)")
    judge.add_argument("--judge-url", help="OpenAI-compatible API root, e.g. https://api.openai.com/v1")
    judge.add_argument("--judge-model", default="gpt-3.5-turbo", help="model name sent to --judge-url")
    judge.add_argument("--judge-api-key-env", default="OPENAI_API_KEY",
                       help="environment variable holding the judge's API key (never pass keys on the command line)")
    judge.add_argument("--judge-transformers", help="a local transformers causal LM (path or Hub id) as judge")
    parser.add_argument("--model-card", help="write the result into this model card's model-index (README.md)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--no-validate-data", action="store_true",
                        help="do not probe every media file before generating (on by default: all bad samples are "
                             "reported at once)")
    parser.add_argument("--skip-bad-rows", action="store_true",
                        help="leave samples with bad media out of the evaluation (listed on stderr) instead of stopping")
    parser.add_argument("--list-tasks", action="store_true", help="print the tasks and their manifest fields")
    parser.add_argument("--convert-save", metavar="ANNOTATION_JSON",
                        help="convert a SAVE annotation file (SAVEBench/*.json) into the manifest --data, then stop")


def _list_tasks() -> int:
    for task in TASKS.values():
        verbatim = "verbatim" if task.prompt_verbatim else "NOT verbatim"
        print(f"{task.name}: {task.title} — {task.dataset}; metric {task.metric}"
              + (f" (+ {', '.join(task.extra_metrics)})" if task.extra_metrics else ""))
        print(f"  prompt ({verbatim}): {task.prompt!r}" + (f", choices as {task.choice_format!r}" if task.choice_format
                                                             else ""))
        for name, prompt in task.judge_prompts.items():
            print(f"  judge prompt {name!r} ({'verbatim' if prompt.verbatim else 'NOT verbatim'}): {prompt.source}")
        print(task.describe_fields())
        if task.notes:
            print(f"  note: {task.notes}")
    return 0


def run_evaluate(args: argparse.Namespace) -> int:
    """Entry point of `transformers-av evaluate`."""
    if args.list_tasks:
        return _list_tasks()
    if not args.task:
        print("error: --task is required (see --list-tasks)", file=sys.stderr)
        return 2
    # a rule or layout the task does not allow raises ValueError: `transformers-av` reports it as one error line
    task = get_task(args.task).with_options(rule=args.rule, choice_format=args.choice_format)
    if args.convert_save:
        if not args.data:
            print("error: --convert-save needs --data (the manifest to write)", file=sys.stderr)
            return 2
        samples = convert_save_annotations(args.convert_save, task)
        write_jsonl(samples, args.data)
        print(f"wrote {len(samples)} samples to {args.data}")
        return 0
    missing = [name for name in ("model", "data", "output") if not getattr(args, name)]
    if missing:
        print(f"error: missing {', '.join('--' + m for m in missing)}", file=sys.stderr)
        return 2
    if task.is_judged and not (args.judge_url or args.judge_transformers):
        print(f"error: task {task.name} is scored by an LLM judge: give --judge-url or --judge-transformers",
              file=sys.stderr)
        return 2

    samples = load_manifest(args.data)
    if args.limit is not None:
        samples = samples[: args.limit]
    if not args.no_validate_data:
        samples = checked_samples(samples, task, args.data, args.media_root, skip_bad_rows=args.skip_bad_rows,
                                  progress=not args.no_progress)
    output = Path(args.output)
    # One process, or one shard per process under `accelerate launch` (each on its own device when on GPUs; gloo
    # between CPU processes, which accelerate only sets up when told the run is on CPU).
    state = PartialState(cpu=args.device == "cpu")
    device = state.device if state.num_processes > 1 and args.device != "cpu" else args.device
    dtype = "auto" if args.dtype == "auto" else getattr(torch, args.dtype)
    model = AutoModelForMultimodalLM.from_pretrained(args.model, dtype=dtype).to(device).eval()
    processor = AutoProcessor.from_pretrained(args.model)
    completed = read_all_predictions(output)
    state.wait_for_everyone()  # every process has read the earlier runs' answers before any process appends
    # The samples still to answer are split, not the manifest: a resumed run keeps the processes equally busy, so none
    # waits at the final barrier for long (a collective's timeout is 30 minutes by default).
    pending = [sample for sample in samples if sample["id"] not in completed]
    generate_answers(
        model, processor, task, shard(pending, state.process_index, state.num_processes),
        predictions_file(output, state.process_index, state.num_processes), media_root=args.media_root,
        batch_size=args.batch_size, max_new_tokens=args.max_new_tokens, generation_kwargs={"num_beams": args.num_beams},
        progress=not args.no_progress and state.is_local_main_process,
    )
    state.wait_for_everyone()
    if not state.is_main_process:
        return 0
    records = merge_in_manifest_order(samples, read_all_predictions(output))
    judge = None
    if task.is_judged:
        if args.judge_transformers:
            judge = TransformersJudge(args.judge_transformers)
        else:
            judge = OpenAICompatibleJudge(args.judge_url, args.judge_model,
                                          api_key=os.environ.get(args.judge_api_key_env))
    summary = score(task, records, judge=judge, judgments_file=output / "judgments.jsonl",
                    caption_tokenizer=args.caption_tokenizer)
    summary["model"] = args.model
    (output / "results.jsonl").write_text(
        "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8"
    )
    _, md_path = write_summary(summary, output)
    print(md_path.read_text(encoding="utf-8"), end="")
    if args.model_card:
        write_model_index(args.model_card, Path(args.model).name, [summary])
        print(f"model-index updated: {args.model_card}")
    return 0
