"""`transformers-av validate-data`: every bad row of a manifest in one report, by 1-based line, with the reason; the
kept manifest of `--skip-bad-rows`; the same check before `train` and `evaluate` start."""

from __future__ import annotations

import json

import pytest


from transformers_av.cli import main  # noqa: E402
from transformers_av.evaluation import get_task  # noqa: E402
from transformers_av.evaluation.validate import checked_samples  # noqa: E402
from transformers_av.synthetic.media import make_frames, make_tone, write_video, write_wav  # noqa: E402
from transformers_av.training import load_av_dataset, load_train_settings, run_training  # noqa: E402
from transformers_av.training.validate import check_manifest, checked_manifest  # noqa: E402


@pytest.fixture(scope="module")
def manifest(tmp_path_factory):
    """Nine lines: two good rows (1, 9), a blank line (2) and one bad row of each kind (3-8)."""
    root = tmp_path_factory.mktemp("manifest")
    write_video(root / "good.mp4", make_frames(8, 32, 32), 8)  # 1 s, no sound track
    write_wav(root / "tone.wav", make_tone(440.0, 1.0), 16000)
    (root / "broken.mp4").write_bytes(b"not a video at all")
    cut = write_video(root / "full.mkv", make_frames(40, 32, 32), 8, lossless=True)  # 5 s
    (root / "cut.mkv").write_bytes(cut.read_bytes()[: cut.stat().st_size // 2])
    rows = [
        {"video": "good.mp4", "prompt": "Q?", "answer": "A."},
        None,
        {"video": "missing.mp4", "prompt": "Q?", "answer": "A."},
        {"video": "broken.mp4", "prompt": "Q?", "answer": "A."},
        {"video": "cut.mkv", "prompt": "Q?", "answer": "A."},
        "{not json",
        {"audio": "good.mp4", "prompt": "Q?", "answer": "A."},
        {"audio": "tone.wav", "prompt": "Q?"},
        {"audio": "tone.wav", "prompt": "Q?", "answer": "A."},
    ]
    lines = ["" if row is None else row if isinstance(row, str) else json.dumps(row) for row in rows]
    path = root / "train.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


EXPECTED = {
    "line 3": "video: Media file not found: '{root}/missing.mp4'",
    "line 4": "video: Cannot open '{root}/broken.mp4': FFmpeg cannot read it as a media container",
    "line 5": "video: '{root}/cut.mkv': the video stream stops at 2.",
    "line 6": "not valid JSON (Expecting property name enclosed in double quotes)",
    "line 7": "audio: '{root}/good.mp4' has no audio track (streams: video); expected a file with sound",
    "line 8": "field 'answer' is missing (give 'prompt' and 'answer', or 'conversations')",
}


def test_every_bad_row_is_reported_by_line(manifest):
    check = check_manifest(manifest, progress=False)
    assert check.rows == 8 and [bad.where for bad in check.bad] == list(EXPECTED)
    for bad in check.bad:
        assert len(bad.problems) == 1
        assert bad.problems[0].startswith(EXPECTED[bad.where].format(root=manifest.parent)), bad.problems[0]
    assert "but the header declares 5.000 s: the file is truncated or damaged" in check.bad[2].problems[0]


def test_cli_reports_all_and_skip_bad_rows_writes_the_kept_manifest(manifest, capsys):
    assert main(["validate-data", str(manifest)]) == 1
    captured = capsys.readouterr()
    assert f"{manifest}: 6 of 8 rows are bad:" in captured.out
    assert all(f"  {where}: " in captured.out for where in EXPECTED)
    assert "Checking media" in captured.err  # the progress bar

    assert main(["validate-data", str(manifest), "--skip-bad-rows", "--no-progress"]) == 0
    kept = manifest.with_name("train.kept.jsonl")
    assert f"wrote the 2 good rows to {kept}" in capsys.readouterr().out
    lines = manifest.read_text().splitlines()
    assert kept.read_text().splitlines() == [lines[0], lines[8]]  # unchanged text of lines 1 and 9
    assert [row["video"] or row["audio"] for row in load_av_dataset(kept)] == [
        str(manifest.parent / "good.mp4"), str(manifest.parent / "tone.wav")]
    assert main(["validate-data", str(kept), "--no-progress"]) == 0
    # the modality of each good row: the silent video is visual-only, the tone audio-only
    assert "rows per modality: visual 1, audio 1, audio_visual 0, text 0." in capsys.readouterr().out


def test_train_checks_the_data_before_building_anything(manifest, tmp_path):
    settings = load_train_settings(None, {"model": "tiny-video-salmonn", "train_data": str(manifest),
                                          "output_dir": str(tmp_path / "run"), "disable_tqdm": True})
    with pytest.raises(ValueError, match=r"6 of 8 rows are bad:\n  line 3: video: Media file not found") as raised:
        run_training(settings)
    assert "line 8: field 'answer' is missing" in str(raised.value) and "--skip-bad-rows" in str(raised.value)
    # the kept manifest of a run that skips bad rows: in the output folder, read with the original media root
    kept, root = checked_manifest(str(manifest), None, skip_bad_rows=True, kept_path=tmp_path / "kept.jsonl",
                                  progress=False)
    assert kept == str(tmp_path / "kept.jsonl") and root == str(manifest.parent)
    assert len(load_av_dataset(kept, media_root=root)) == 2


def test_evaluate_checks_the_samples(manifest, tmp_path, capsys):
    root = manifest.parent
    data = tmp_path / "eval.jsonl"
    rows = [{"id": "a", "question": "q", "choices": ["x", "y"], "answer": "x", "video": "good.mp4"},
            {"id": "b", "question": "q", "choices": ["x", "y"], "answer": "x", "video": "cut.mkv"}]
    data.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    code = ["evaluate", "--model", str(tmp_path / "no-model"), "--task", "nextqa_mc", "--data", str(data),
            "--media-root", str(root), "--output", str(tmp_path / "out"), "--no-progress"]
    assert main(code) == 2  # stops before the model is even loaded: one error, every bad sample on its own line
    err = capsys.readouterr().err
    assert f"transformers-av evaluate: error: {data}: 1 of 2 samples have bad media:\n    line 2 (sample 'b'): video: " in err
    kept = checked_samples(rows, get_task("nextqa_mc"), data, root, skip_bad_rows=True, progress=False)
    assert [sample["id"] for sample in kept] == ["a"]
