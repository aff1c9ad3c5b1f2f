"""`transformers-av` command line: convert official checkpoints, list presets."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def _convert(args) -> int:
    import torch

    from .configuration import FavorConfig
    from .configuration.presets import favor_preset
    from .conversion.checkpoint import assemble_official_state_dict, convert_checkpoint, load_official_file
    from .conversion.favor import favor_config_from_official

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
    from .configuration.presets import PRESETS, preset_parameter_counts

    print("| preset | total | LLM | Whisper encoder | BEATs | ViT + Q-Former | connector |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name in PRESETS:
        c = preset_parameter_counts(name)
        cells = [f"{c[k]:,}" for k in ("total", "llm", "whisper_encoder", "beats", "vision", "connector")]
        print(f"| {name} | " + " | ".join(cells) + " |")
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

    presets = sub.add_parser("presets", help="print the published shapes and their exact parameter counts")
    presets.set_defaults(func=_presets)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
