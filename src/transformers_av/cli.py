"""`transformers-av` command line: run a demo, convert official checkpoints, list presets, fine-tune (`train`), check a
training manifest (`validate-data`), build FAVOR's storytelling set (`make-storytelling`)."""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import torch
import yaml
from transformers import AutoModelForMultimodalLM, AutoProcessor
from transformers.utils import logging as hf_logging

from .conversion.checkpoint import assemble_official_state_dict, convert_checkpoint, load_official_file
from .conversion.favor import favor_config_from_official
from .evaluation.cli import add_evaluate_arguments, run_evaluate
from .evaluation.scoring import exact_match
from .models import FavorConfig
from .presets import AV_LLM_PRESETS, DEMO_CHECKPOINT, PRESETS, TINY_MODELS, favor_preset, preset_parameter_counts
from .synthetic.benchmark import BENCHMARK_CLIP, FAMILIES, BenchmarkClipSettings, make_benchmark_clip
from .training.cli import run_from_args as run_train
from .training.settings import train_argument_parser
from .training.validate import add_validate_data_arguments, run_validate_data
from .training.storytelling import add_make_storytelling_arguments, run_make_storytelling


def _convert(args) -> int:
    if args.official_config:
        config = favor_config_from_official(json.loads(Path(args.official_config).read_text()))
    elif args.config:
        config = FavorConfig.from_pretrained(args.config)
    else:
        config = favor_preset(args.preset)
    if args.full_state_dict:
        official = load_official_file(args.full_state_dict)
    else:
        if not args.delta:
            print("error: give --full-state-dict, or --delta with the frozen parts", file=sys.stderr)
            return 2
        official = assemble_official_state_dict(
            load_official_file(args.delta),
            whisper=args.whisper,
            beats=args.beats if config.audio_config is not None else None,
            instructblip=args.instructblip,
            llm=args.llm,
        )
    dtype = None if args.dtype == "auto" else getattr(torch, args.dtype)
    report = convert_checkpoint(
        official, config, args.output, lora_alpha=args.lora_alpha, merge_lora=not args.keep_lora, dtype=dtype,
        max_shard_size=args.max_shard_size,
    )
    print(f"wrote {args.output}: {report.converted} tensors converted, {len(report.dropped)} official keys dropped "
          "(aliases, unused modules, buffers; see conversion_report.json)")
    return 0


def _presets(args) -> int:
    """One table per model family: the parameters of each preset per part, as `count_parameters` names the parts."""
    for names in (PRESETS, AV_LLM_PRESETS):
        counts = {name: preset_parameter_counts(name) for name in names}
        parts = list(counts[names[0]])
        print("| preset | " + " | ".join(parts) + " |")
        print("|---|" + "---:|" * len(parts))
        for name, count in counts.items():
            print(f"| {name} | " + " | ".join(f"{count[part]:,}" for part in parts) + " |")
        print()
    return 0


DEFAULT_DEMO_QUESTION = "What happens on screen when the beep sounds?"
#: what the demo runs by default while no trained checkpoint is shipped: the random-weight model of its shape
DEMO_FALLBACK = "tiny-video-salmonn-synthetic"


def _load_demo_model(source: str | None):
    """(model, processor) of the demo: the shipped trained checkpoint by default, a tiny random-weight model by name,
    or any checkpoint folder / Hub id."""
    if source in TINY_MODELS:
        print(f"model: {TINY_MODELS[source].description} with RANDOM weights (no trained checkpoint is used): the "
              "answer is noise")
        model, processor = TINY_MODELS[source].build()
        return model.eval(), processor
    if source is None:
        if not (DEMO_CHECKPOINT / "config.json").is_file():
            # no trained checkpoint in this installation: say so, and run the random-weight model of the same shape
            print(f"model: no trained demo checkpoint is shipped in this installation ({DEMO_CHECKPOINT}); build it "
                  "with examples/synthetic/video_salmonn.yaml (README: Synthetic benchmark and ablations)")
            return _load_demo_model(DEMO_FALLBACK)
        print(f"model: the shipped tiny video-SALMONN trained on the synthetic benchmark ({DEMO_CHECKPOINT})")
        # 2 MB load in milliseconds: transformers' "Loading weights" bar would only be noise on stderr
        bars_were_enabled = hf_logging.is_progress_bar_enabled()
        hf_logging.disable_progress_bar()
        try:
            model = AutoModelForMultimodalLM.from_pretrained(DEMO_CHECKPOINT)
        finally:
            if bars_were_enabled:
                hf_logging.enable_progress_bar()
        return model.eval(), AutoProcessor.from_pretrained(DEMO_CHECKPOINT)
    return AutoModelForMultimodalLM.from_pretrained(source).eval(), AutoProcessor.from_pretrained(source)


def _demo(args) -> int:
    """Answer a question about a clip (by default a fresh clip of the synthetic benchmark, asked its task's question
    and judged by the task's rule), running every stage; print the answer and the time of each stage."""
    if args.video is not None and args.task is not None:
        raise ValueError("--task picks the generated clip's task; a clip given with --video is asked --question")
    if args.video is None and args.question is not None:
        raise ValueError("--question is for a clip given with --video; a generated clip is asked its task's question "
                         "(pick the task with --task)")
    torch.manual_seed(args.seed)
    model, processor = _load_demo_model(args.model)
    with tempfile.TemporaryDirectory() as tmp:
        expected = None
        if args.video is None:
            family = args.task or list(FAMILIES)[args.seed % len(FAMILIES)]
            settings = BENCHMARK_CLIP if args.seconds is None else BenchmarkClipSettings(seconds=int(args.seconds))
            row = make_benchmark_clip(Path(tmp) / "demo.mp4", family, seed=args.seed, settings=settings)
            video, question, expected = row["video"], row["prompt"], row["answer"]
            print(f"generated {video}: a {settings.seconds} s clip of the synthetic benchmark's {family!r} task "
                  f"({FAMILIES[family].ability}), seed {args.seed}")
        else:
            video, question = args.video, args.question or DEFAULT_DEMO_QUESTION

        timings: dict[str, float] = {}
        stages = dict(model.model.encoder_modules(), connector=model.model.connector)
        starts: dict[str, float] = {}
        for name, module in stages.items():
            module.register_forward_pre_hook(lambda m, a, name=name: starts.__setitem__(name, time.perf_counter()))
            module.register_forward_hook(
                lambda m, a, o, name=name: timings.__setitem__(name, timings.get(name, 0.0) + time.perf_counter() - starts[name])
            )
        start = time.perf_counter()
        inputs = processor(text=question, videos=video)
        timings = {"decode + preprocess": time.perf_counter() - start}
        start = time.perf_counter()
        with torch.inference_mode():
            output = model.generate(**inputs, max_new_tokens=args.max_new_tokens, do_sample=False, num_beams=1)
        total_generate = time.perf_counter() - start
        encoders = sum(v for k, v in timings.items() if k != "decode + preprocess")
        timings["LLM (prefill + decoding)"] = total_generate - encoders
        answer = processor.tokenizer.decode(output[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True).strip()

    frames = int(inputs["video_frame_mask"].sum()) if "video_frame_mask" in inputs else 0
    # the placeholder: FAVOR's `audio_visual_token_id`, the Audio-Visual LLM's `media_token_id`
    placeholder_id = model.config.media_token_id if model.config.model_type == "av_llm" else model.config.audio_visual_token_id
    placeholders = int((inputs["input_ids"] == placeholder_id).sum())
    print(f"question: {question}")
    if expected is not None:
        print(f"expected: {expected}")
    print(f"answer:   {answer}")
    if expected is not None:
        # every benchmark family is scored by exact match (FAVOR §4.1; video-SALMONN Appendix C)
        print(f"correct:  {'yes' if exact_match(answer, expected) else 'no'}")
    print(f"frames: {frames}, audio-visual tokens: {placeholders}, prompt tokens: {inputs['input_ids'].shape[1]}")
    for stage, seconds in timings.items():
        print(f"  {stage:<28} {seconds * 1000:9.1f} ms")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="transformers-av", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    convert = sub.add_parser("convert", help="official video-SALMONN / FAVOR checkpoint -> save_pretrained folder")
    source = convert.add_argument_group("official weights")
    source.add_argument("--full-state-dict", help="torch.save(model.state_dict()) of the official model")
    source.add_argument("--delta", help="the released trainable-only checkpoint (pytorch_model_*.pt)")
    source.add_argument("--whisper", default="openai/whisper-large-v2", help="Whisper model path or Hub id")
    source.add_argument("--beats", help="BEATs_iter3_plus_AS2M_finetuned_on_AS2M_cpt2.pt (video-SALMONN)")
    source.add_argument("--instructblip", help="instruct_blip_vicuna13b_trimmed.pth (LAVIS)")
    source.add_argument("--llm", help="Vicuna v1.5 path or Hub id (e.g. lmsys/vicuna-13b-v1.5)")
    shape = convert.add_mutually_exclusive_group()
    shape.add_argument("--preset", default="video-salmonn-13b", help="favor-7b, favor-13b, video-salmonn-7b, video-salmonn-13b")
    shape.add_argument("--config", help="a FavorConfig folder or config.json")
    shape.add_argument("--official-config", help="JSON with official_args and modules (as in the parity fixtures)")
    convert.add_argument("--lora-alpha", type=float, default=32.0, help="LoRA alpha of the release (r is read from the weights)")
    convert.add_argument("--keep-lora", action="store_true", help="write the LoRA as a PEFT adapter instead of merging it")
    convert.add_argument("--dtype", default="auto", choices=["auto", "float32", "float16", "bfloat16"])
    convert.add_argument("--max-shard-size", default="5GB")
    convert.add_argument("--output", required=True)
    convert.set_defaults(func=_convert)

    demo = sub.add_parser("demo", help="answer a question about a video, timing every stage (default: a fresh clip of "
                          "the synthetic benchmark and the shipped trained tiny video-SALMONN)")
    demo.add_argument("--video", help="a video file (default: a generated clip of the synthetic benchmark)")
    demo.add_argument("--model", help="a converted/trained model folder or Hub id, or a tiny model with random "
                      f"weights: {' / '.join(TINY_MODELS)} (default: the checkpoint trained on the synthetic benchmark "
                      f"when one is shipped in presets/assets, else {DEMO_FALLBACK})")
    demo.add_argument("--task", choices=list(FAMILIES), help="the generated clip's task (default: picked by --seed)")
    demo.add_argument("--question", help=f"the question about --video (default: {DEFAULT_DEMO_QUESTION!r})")
    demo.add_argument("--seconds", type=int, help="length of the generated clip (default: the benchmark's "
                      f"{BENCHMARK_CLIP.seconds} s, what the shipped model was trained on)")
    demo.add_argument("--max-new-tokens", type=int, default=16)
    demo.add_argument("--seed", type=int, default=0, help="seed of the generated clip (a fresh clip per seed)")
    demo.set_defaults(func=_demo)

    presets = sub.add_parser("presets", help="print the published shapes and their exact parameter counts")
    presets.set_defaults(func=_presets)

    evaluate = sub.add_parser(
        "evaluate", help="run an AVEB / SAVE benchmark task: resumable per-sample JSONL, summary with 95%% CI",
        description="Evaluate a model on one benchmark task (see transformers_av.evaluation and the README).",
    )
    add_evaluate_arguments(evaluate)
    evaluate.set_defaults(func=run_evaluate)

    train = sub.add_parser(
        "train", help="fine-tune from a YAML config and/or options; under `accelerate launch` on many processes",
        description="Fine-tune a FAVOR / video-SALMONN model (see transformers_av.training.cli and the README).",
        parents=[train_argument_parser(add_help=False)],  # the options HfArgumentParser builds from TrainSettings
    )
    train.set_defaults(func=run_train)

    validate = sub.add_parser(
        "validate-data", help="check every row and media file of a training manifest; report all bad rows at once",
        description="Check a training manifest before a run: every row's format and every media file it names "
                    "(opened, streams, duration, cut-short files), with 1-based line numbers.",
    )
    add_validate_data_arguments(validate)
    validate.set_defaults(func=run_validate_data)
    storytelling = sub.add_parser(
        "make-storytelling", help="build FAVOR's storytelling fine-tuning set (Table 7 prompt) with an LLM",
        description="Write FAVOR's storytelling training rows (see transformers_av.training.storytelling).",
    )
    add_make_storytelling_arguments(storytelling)
    storytelling.set_defaults(func=run_make_storytelling)
    return parser


# What a user can cause with a command line (a missing file, an unknown model id, a typo in a config, a value out of
# range): reported as one `error:` line with exit status 2, as argparse reports a bad option. Anything else is a bug
# and keeps its traceback; TRANSFORMERS_AV_TRACEBACK=1 keeps it for these too.
USER_ERRORS = (ValueError, OSError, yaml.YAMLError)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except USER_ERRORS as error:
        if os.environ.get("TRANSFORMERS_AV_TRACEBACK"):
            raise
        first, *rest = str(error).strip().splitlines() or [type(error).__name__]
        print(f"transformers-av {args.command}: error: {first}", file=sys.stderr)
        for line in rest:  # e.g. one line per bad manifest row
            print(f"  {line}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
