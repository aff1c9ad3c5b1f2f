"""The papers' ablations on the synthetic audio-visual benchmark (`transformers_av.synthetic.benchmark`).

Run (from the repository root, in the project's virtual environment):

    PYTHONPATH=src python benchmarks/ablation.py --quick                  # CI: the shipped checkpoint, ~1 min
    PYTHONPATH=src python benchmarks/ablation.py --evaluate DIR           # one checkpoint's accuracy per task family
    PYTHONPATH=src python benchmarks/ablation.py --seeds 0,1,2 --max-steps 500 --jobs 2 --benchmark ablation-clips
                                                                          # every variant trained and tested

What it does. Each variant is a tiny model trained from scratch by the demo checkpoint's recipe
(`examples/synthetic/video_salmonn.yaml`, through `transformers_av.training.run.run_training`, as `transformers-av train`
does) with one thing changed, then asked the benchmark's test split (greedy decoding, exact match):

| variant | what changes | paper |
|---|---|---|
| full | nothing (tiny video-SALMONN) | |
| w/o 0.5 s resolution | `resolutions=[[10, 30]]` (trained so) | video-SALMONN Table 4 row 3 |
| w/o 5 s resolution | `resolutions=[[1, 3]]` (trained so) | video-SALMONN Table 4 row 2 |
| w/o synchronisation | `audio_visual_sync="none"` (streams side by side) | FAVOR Table 4, video-SALMONN Table 4 |
| w/o causal attention | `causal_attention="none"` | FAVOR Table 4 |
| w/o diversity loss | `diversity_loss_weight=0` | video-SALMONN Table 4 row 5 |
| 0.5 s output zero-masked (5 s kept) | the full model, `masked_resolutions=[0]` at inference only | video-SALMONN Table 5 |
| 5 s output zero-masked (0.5 s kept) | the full model, `masked_resolutions=[1]` at inference only | video-SALMONN Table 5 |
| unpaired rows: mixed training | training rows tagged by `FAMILY_MODALITY` (`speech`/`count` heard alone, `visual` seen alone), mixed by video-SALMONN's official rules (`VIDEO_SALMONN_MIXING_VALUES`) | video-SALMONN Table 4 row 4 |
| unpaired rows: w/o mixed training | the same rows, not mixed | video-SALMONN Table 4 row 4 |
| Audio-Visual LLM: MAT | `tiny-av-llm-synthetic` on the tagged rows, the three modalities mixed in every batch | Shu et al. Table 4 |
| Audio-Visual LLM: plain training (PT2) | the same rows, first the unimodal ones, then the audio-visual ones (half the steps each) | Shu et al. Table 4 |

The two mixing variants are asked with the whole clip, sound and pictures, for every question (what the paper's mixing
is for: a model trained on unimodal rows must use both streams of a paired clip). The Audio-Visual LLM variants ask
each question with its family's modality token, as they were trained.

"Without sliding window" (FAVOR Table 4: a fixed number of queries over the whole clip) is the 5 s resolution
alone on this benchmark: its one 10-frame window already spans every 4 s clip, so "w/o 0.5 s resolution" is that
ablation too.

`--max-steps` sets the training budget of every variant (the recipe's own is 2000 steps, where the full model scores
100% and so do the ablations tried there: a ceiling). `--jobs N` trains N models at once, one process each on one
thread, decoding their own clips; every finished (variant, seed) is kept in `--output`/jobs/ and a rerun with the same
arguments resumes from there.

Accuracy per task family is pooled over the seeds (one trained model per seed, the same test clips), with a 95%
Wilson score interval over the pooled answers. The script writes `--output`/results.json, table.md (the README
table) and ablation.png.

`--quick` trains nothing: it asks the SHIPPED checkpoint (the full model) a fresh test split, with and without each
resolution zero-masked, and asserts only that the full model beats chance on every task family.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import yaml
from transformers import AutoModelForMultimodalLM, AutoProcessor

from transformers_av.evaluation import scoring
from transformers_av.models.av_llm.processing_av_llm import mark_modality
from transformers_av.presets import DEMO_CHECKPOINT
from transformers_av.presets.paper import VIDEO_SALMONN_MIXING_VALUES
from transformers_av.synthetic.benchmark import FAMILIES, answer_rows, write_benchmark
from transformers_av.training.data import read_jsonl_rows

RECIPE = Path(__file__).resolve().parent.parent / "examples" / "synthetic" / "video_salmonn.yaml"
#: the recipe's training split (its header): 3000 clips, of every 8 three `speech` and two `count` clips
RECIPE_TRAIN_CLIPS = 3000
RECIPE_TRAIN_WEIGHTS = {"speech": 3, "count": 2}


#: the modality that suffices to answer each family's question: the rows' `modality` of the variants trained on
#: unpaired rows (a "visual" row's sound is switched off, an "audio" row of a video is given its sound track only)
FAMILY_MODALITY = {"speech": "audio", "visual": "visual", "sync": "audio_visual", "count": "audio",
                   "match": "audio_visual"}
UNIMODAL, AUDIO_VISUAL = ("audio", "visual"), ("audio_visual",)


@dataclass(frozen=True)
class Variant:
    """A model of the ablation.

    Attributes:
        name: the table's row name.
        train_overrides: model config overrides for training (the ablation switches).
        inference_overrides: model config overrides at inference only (e.g. a zero-masked resolution).
        trained_as: an inference-only variant reuses this variant's trained models.
        settings: `TrainSettings` overrides of the recipe (e.g. another `model`, video-SALMONN's mixing ratios).
        unpaired: train on rows tagged with `FAMILY_MODALITY` (unimodal families heard or seen alone) instead of
            every row audio-visual.
        stages: the row modalities of each training stage, in order, the recipe's steps split evenly between them
            (each stage starts from the previous one's weights); `None`: one stage on every row.
        ask_with_modality: ask each test question with its family's modality token (`FAMILY_MODALITY`; the
            Audio-Visual LLM's protocol); otherwise every test clip is given whole, sound and pictures.
    """

    name: str
    train_overrides: dict[str, Any] = field(default_factory=dict)
    inference_overrides: dict[str, Any] = field(default_factory=dict)
    trained_as: str | None = None
    settings: dict[str, Any] = field(default_factory=dict)
    unpaired: bool = False
    stages: tuple[tuple[str, ...], ...] | None = None
    ask_with_modality: bool = False


#: video-SALMONN's mixing at the official rates (`transformers_av.training.mixing.VIDEO_SALMONN_MIXING`): a fifth of
#: the video-only rows get the sound of a random audio-only row and both questions, a tenth of the paired rows become
#: audio-video matching questions
_MIXED = dict(VIDEO_SALMONN_MIXING_VALUES)
_AV_LLM = {"model": "tiny-av-llm-synthetic"}

VARIANTS = [
    Variant("full"),
    Variant("w/o 0.5 s resolution", {"resolutions": [[10, 30]]}),
    Variant("w/o 5 s resolution", {"resolutions": [[1, 3]]}),
    Variant("w/o synchronisation", {"audio_visual_sync": "none"}),
    Variant("w/o causal attention", {"causal_attention": "none"}),
    Variant("w/o diversity loss", {"diversity_loss_weight": 0.0}),
    Variant("0.5 s output zero-masked (5 s kept)", inference_overrides={"masked_resolutions": [0]}, trained_as="full"),
    Variant("5 s output zero-masked (0.5 s kept)", inference_overrides={"masked_resolutions": [1]}, trained_as="full"),
    Variant("unpaired rows: mixed training", settings=_MIXED, unpaired=True),
    Variant("unpaired rows: w/o mixed training", unpaired=True),
    Variant("Audio-Visual LLM: MAT", settings=_AV_LLM, unpaired=True, ask_with_modality=True),
    Variant("Audio-Visual LLM: plain training (PT2)", settings=_AV_LLM, unpaired=True, ask_with_modality=True,
            stages=(UNIMODAL, AUDIO_VISUAL)),
]
QUICK_VARIANTS = [v for v in VARIANTS if v.name == "full" or v.trained_as == "full"]


def benchmark_rows(data: Path, *, seed: int, train_clips: int, test_clips: int) -> list[dict]:
    """The test rows of the benchmark in `data`: written first unless `data` already holds this very benchmark
    (its stamp, `ablation-benchmark.json`, names the same seed, sizes and training weights; `write_benchmark` is
    deterministic, so the same stamp means the same clips)."""
    stamp = {"seed": seed, "sizes": {"train": train_clips, "test": test_clips}, "train_weights": RECIPE_TRAIN_WEIGHTS}
    stamp_path = data / "ablation-benchmark.json"
    if stamp_path.is_file() and json.loads(stamp_path.read_text()) == stamp:
        return [row for _, row in read_jsonl_rows(data / "test.jsonl")]
    stamp_path.unlink(missing_ok=True)  # a half-written folder is never taken for a complete one
    rows = write_benchmark(data, seed=seed, sizes=stamp["sizes"], train_weights=RECIPE_TRAIN_WEIGHTS)["test"]
    stamp_path.write_text(json.dumps(stamp))
    return rows


def wilson_interval(correct: int, total: int, z: float = 1.959964) -> tuple[float, float]:
    """95% Wilson score interval of a proportion (stays inside [0, 1] and is sensible at 0 or total hits)."""
    if total == 0:
        return (0.0, 1.0)
    p = correct / total
    centre = (p + z * z / (2 * total)) / (1 + z * z / total)
    half = z * math.sqrt(p * (1 - p) / total + z * z / (4 * total * total)) / (1 + z * z / total)
    # the interval always holds p; clamping to it also absorbs float round-off at p = 0 or 1 (e.g. 50/50)
    return (max(0.0, min(p, centre - half)), min(1.0, max(p, centre + half)))


def score_rows(rows: list[dict], answers: list[str]) -> list[bool]:
    """Each answer judged by its family's rule (`TaskFamily.rule`, a function of `transformers_av.evaluation.scoring`)."""
    return [bool(getattr(scoring, FAMILIES[row["family"]].rule)(answer, row["answer"])) for row, answer in zip(rows, answers)]


def evaluate(model_dir: str | Path, rows: list[dict], media_root: Path, overrides: dict | None = None,
             *, ask_with_modality: bool = False) -> list[bool]:
    """Load `model_dir` (config `overrides` applied, e.g. an inference-time mask) and score its answers to `rows`
    (`ask_with_modality`: each prompt marked with its family's modality token, `FAMILY_MODALITY`)."""
    model = AutoModelForMultimodalLM.from_pretrained(model_dir, **(overrides or {})).eval()
    processor = AutoProcessor.from_pretrained(model_dir)
    asked = [{**row, "prompt": mark_modality(row["prompt"], FAMILY_MODALITY[row["family"]])} for row in rows] \
        if ask_with_modality else rows
    return score_rows(rows, answer_rows(model, processor, asked, media_root=media_root))


def per_family(rows: list[dict], hits: list[bool]) -> dict[str, dict[str, Any]]:
    """family -> {correct, total, accuracy, low, high} (and "all")."""
    table = {}
    for family in [*FAMILIES, "all"]:
        picked = [hit for row, hit in zip(rows, hits) if family in ("all", row["family"])]
        low, high = wilson_interval(sum(picked), len(picked))
        table[family] = {"correct": sum(picked), "total": len(picked),
                         "accuracy": sum(picked) / max(len(picked), 1), "low": low, "high": high}
    return table


def training_manifest(data: Path, variant: Variant, stage: tuple[str, ...] | None) -> Path:
    """The train split as `variant` (and its `stage`) trains on it: as written, or tagged by `FAMILY_MODALITY` and
    kept to the stage's modalities (a manifest beside the benchmark's, the same clips)."""
    if not variant.unpaired:
        return data / "train.jsonl"
    name = "train-unpaired" + ("" if stage is None else "-" + "-".join(stage)) + ".jsonl"
    tagged = [{**row, "modality": FAMILY_MODALITY[row["family"]]} for _, row in read_jsonl_rows(data / "train.jsonl")]
    kept = [row for row in tagged if stage is None or row["modality"] in stage]
    path, partial = data / name, data / f"{name}.{os.getpid()}.partial"
    partial.write_text("".join(json.dumps(row) + "\n" for row in kept))
    partial.replace(path)  # atomic: parallel jobs write the same rows, and none reads a half-written file
    return path


def train_variant(variant: Variant, seed: int, data: Path, output: Path, max_steps: int | None,
                  *, in_process_decoding: bool = False) -> Path:
    """Train `variant` by the demo recipe with `seed`, stage after stage; return the last stage's final folder.
    `in_process_decoding`: decode the clips in the training process (no data-loading worker), for runs that already
    put one process on each core."""
    from transformers_av.training.run import run_training
    from transformers_av.training.settings import TrainSettings

    recipe = yaml.safe_load(RECIPE.read_text())
    recipe.update(seed=seed, model_config_overrides=dict(variant.train_overrides), **variant.settings)
    if max_steps is not None:
        recipe["max_steps"] = max_steps
    if in_process_decoding:
        recipe["dataloader_num_workers"] = 0
    stages = variant.stages or (None,)
    steps = recipe["max_steps"] // len(stages)
    final = None
    for number, stage in enumerate(stages):
        settings = dict(recipe, train_data=str(training_manifest(data, variant, stage)),
                        output_dir=str(output / f"stage{number}"), max_steps=steps)
        if final is not None:  # the next stage goes on from the previous one's weights
            settings.update(model=str(final), model_config_overrides={})
        final = Path(run_training(TrainSettings(**settings))["final_dir"])
    return final


def train_and_evaluate(variants: list[Variant], seed: int, data: Path, rows: list[dict], work: Path,
                       max_steps: int | None, in_process_decoding: bool) -> dict[str, list[bool]]:
    """Train `variants[0]` with `seed` and ask the test `rows` of it and of each inference-only variant in
    `variants[1:]` (which reuse its weights); one job of `--jobs`."""
    trained = variants[0]
    model_dir = train_variant(trained, seed, data, work / _file_name(f"{trained.name}-{seed}"), max_steps,
                              in_process_decoding=in_process_decoding)
    return {variant.name: evaluate(model_dir, rows, data, variant.inference_overrides,
                                   ask_with_modality=variant.ask_with_modality) for variant in variants}


def _job(arguments: tuple) -> tuple[int, dict[str, list[bool]]]:
    torch.set_num_threads(1)  # one job per core: more threads per job only oversubscribe the cores
    seed = arguments[1]
    return seed, train_and_evaluate(*arguments)


def _file_name(text: str) -> str:
    return text.replace(" ", "_").replace("/", "")


def job_file(done_dir: Path, variant: Variant, seed: int, max_steps: int | None) -> Path:
    """Where the answers of `variant` trained with `seed` for `max_steps` are kept."""
    return done_dir / _file_name(f"{variant.name}-seed{seed}-steps{max_steps}.json")


def run_jobs(groups: list[list[Variant]], seeds: list[int], data: Path, rows: list[dict], work: Path, done_dir: Path,
             max_steps: int | None, processes: int, start: float) -> tuple[dict[str, list[bool]], int]:
    """Train and ask every (group, seed) job, `processes` at a time; return each variant's answers, pooled in seed
    order (aligned with the test rows repeated once per seed), and how many jobs were read back from `done_dir`.

    Each finished job's answers are kept in `done_dir`, so a run stopped part-way resumes where it was."""
    done_dir.mkdir(parents=True, exist_ok=True)
    finished, jobs = [], []
    for seed in seeds:
        for group in groups:
            done = job_file(done_dir, group[0], seed, max_steps)
            if done.is_file():
                finished.append((seed, json.loads(done.read_text())))
            else:
                jobs.append(((group, seed, data, rows, work, max_steps, processes > 1), done))
    resumed = len(finished)

    def record(seed: int, job_hits: dict[str, list[bool]], done: Path) -> None:
        done.write_text(json.dumps(job_hits))
        finished.append((seed, job_hits))
        for name, variant_hits in job_hits.items():
            print(f"seed {seed}: {name}: {sum(variant_hits)}/{len(rows)} ({time.perf_counter() - start:.0f} s)",
                  flush=True)

    if processes > 1:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor, as_completed

        with ProcessPoolExecutor(processes, mp_context=multiprocessing.get_context("spawn")) as pool:
            futures = {pool.submit(_job, job): done for job, done in jobs}
            for future in as_completed(futures):
                record(*future.result(), futures[future])
    else:
        for job, done in jobs:
            record(job[1], train_and_evaluate(*job), done)
    by_seed: dict[int, dict[str, list[bool]]] = {seed: {} for seed in seeds}
    for seed, job_hits in finished:
        by_seed[seed].update(job_hits)
    names = [variant.name for group in groups for variant in group]
    return {name: [hit for seed in seeds for hit in by_seed[seed][name]] for name in names}, resumed


def render_table(results: dict[str, dict[str, dict[str, Any]]]) -> str:
    families = [*FAMILIES, "all"]
    chance = {name: family.chance for name, family in FAMILIES.items()}
    lines = ["| variant | " + " | ".join(families) + " |", "|---|" + "---:|" * len(families)]
    lines.append("| chance | " + " | ".join(f"{100 * chance[f]:.1f}" if f in chance else "" for f in families) + " |")
    for name, table in results.items():
        cells = [f"{100 * table[f]['accuracy']:.1f} [{100 * table[f]['low']:.0f}, {100 * table[f]['high']:.0f}]"
                 for f in families]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(results: dict[str, dict[str, dict[str, Any]]], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    families = list(FAMILIES)
    width = 0.8 / len(results)
    figure, axes = plt.subplots(figsize=(12, 4.5))
    for i, (name, table) in enumerate(results.items()):
        x = [j + (i - (len(results) - 1) / 2) * width for j in range(len(families))]
        accuracy = [table[f]["accuracy"] for f in families]
        errors = [[table[f]["accuracy"] - table[f]["low"] for f in families],
                  [table[f]["high"] - table[f]["accuracy"] for f in families]]
        axes.bar(x, accuracy, width, yerr=errors, capsize=2, label=name, color=plt.cm.tab20(i % 20))  # 10+ variants
    for j, family in enumerate(families):
        axes.hlines(FAMILIES[family].chance, j - 0.45, j + 0.45, colors="black", linestyles="dotted")
    axes.set_xticks(range(len(families)), families)
    axes.set_ylabel("accuracy (exact match), 95% interval")
    axes.set_ylim(0, 1.05)
    axes.set_title(title)
    axes.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))  # beside the bars, never over them
    figure.tight_layout()
    figure.savefig(path, dpi=120)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="the shipped checkpoint only (no training); for CI")
    parser.add_argument("--evaluate", help="print one checkpoint's accuracy per task family and exit")
    parser.add_argument("--seeds", default="0,1,2", help="training seeds (one model per variant and seed)")
    parser.add_argument("--benchmark-seed", type=int, default=0, help="seed of the benchmark's clips")
    parser.add_argument("--train-clips", type=int, default=RECIPE_TRAIN_CLIPS)
    parser.add_argument("--test-clips", type=int, default=None, help="default: 100 (50 with --quick)")
    parser.add_argument("--max-steps", type=int, default=None, help="override the recipe's optimizer steps")
    parser.add_argument("--variants", help="comma-separated variant names (default: all); an inference-only variant brings the variant it reuses")
    parser.add_argument("--jobs", type=int, default=1,
                        help="models trained at once, one process each (e.g. the number of cores); each decodes its "
                             "own clips on one thread")
    parser.add_argument("--benchmark", help="folder of the benchmark's clips: written there if it does not hold "
                                            "them yet, reused otherwise (default: a temporary folder)")
    parser.add_argument("--output", default="ablation-results")
    args = parser.parse_args(argv)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    if args.quick and not (DEMO_CHECKPOINT / "config.json").is_file():
        print(f"--quick asks the shipped demo checkpoint, and none is shipped ({DEMO_CHECKPOINT}): build it with "
              f"{RECIPE} and copy its final/ folder there", file=sys.stderr)
        return 2
    output = Path(args.output)
    output.mkdir(parents=True, exist_ok=True)
    test_clips = args.test_clips or (50 if args.quick else 100)
    start = time.perf_counter()

    if args.jobs < 1:
        parser.error(f"--jobs must be >= 1, got {args.jobs}")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        data = Path(args.benchmark) if args.benchmark else work / "benchmark"
        train_clips = 0 if (args.quick or args.evaluate) else args.train_clips
        rows = benchmark_rows(data, seed=args.benchmark_seed, train_clips=train_clips, test_clips=test_clips)
        if args.evaluate:
            table = per_family(rows, evaluate(args.evaluate, rows, data))
            print(render_table({args.evaluate: table}))
            return 0

        variants = QUICK_VARIANTS if args.quick else VARIANTS
        if args.variants:
            wanted = [name.strip() for name in args.variants.split(",")]
            unknown = [name for name in wanted if name not in {v.name for v in VARIANTS}]
            if unknown:
                parser.error(f"--variants: unknown {unknown}; the variants are {[v.name for v in VARIANTS]}")
            variants = [v for v in VARIANTS if v.name in wanted or v.name in {w.trained_as for w in VARIANTS if w.name in wanted}]
        seeds = [None] if args.quick else [int(s) for s in args.seeds.split(",")]
        resumed = 0
        # one job per (trained variant, seed); an inference-only variant joins the job that trains its weights
        groups = [[v, *(w for w in variants if w.trained_as == v.name)] for v in variants if v.trained_as is None]
        if args.quick:
            hits = {v.name: evaluate(DEMO_CHECKPOINT, rows, data, v.inference_overrides) for v in variants}
            seeds_done = [None]
        else:
            answers, resumed = run_jobs(groups, seeds, data, rows, work, output / "jobs", args.max_steps, args.jobs,
                                        start)
            hits = {variant.name: answers[variant.name] for variant in variants}  # the table in VARIANTS order
            seeds_done = seeds
        pooled_rows = [row for _ in seeds_done for row in rows]

    results = {name: per_family(pooled_rows, variant_hits) for name, variant_hits in hits.items()}
    runtime = time.perf_counter() - start
    table = render_table(results)
    print(table)
    print(f"runtime: {runtime:.0f} s ({'quick: the shipped checkpoint' if args.quick else f'seeds {args.seeds}'}, "
          f"{test_clips} test clips per seed" + (f"; {resumed} finished jobs read from --output/jobs" if resumed else "")
          + ")")
    (output / "results.json").write_text(json.dumps(
        {"results": results, "seeds": args.seeds if not args.quick else "shipped", "test_clips": test_clips,
         "max_steps": args.max_steps, "runtime_s": runtime, "resumed_jobs": resumed}, indent=2))
    (output / "table.md").write_text(table + "\n")
    plot(results, output / "ablation.png",
         "synthetic benchmark: " + ("shipped checkpoint" if args.quick else f"{len(seeds)} seeds pooled"))
    print(f"wrote {output}/results.json, table.md, ablation.png")

    if args.quick:  # the only assertion CI makes: the full model beats chance on every task family
        full = results["full"]
        below = [f for f in FAMILIES if full[f]["accuracy"] <= FAMILIES[f].chance]
        if below:
            print(f"FAIL: the full model does not beat chance on {below}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
