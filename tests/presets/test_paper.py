"""`transformers-av presets` and `preset_parameter_counts`: the published shapes counted on the meta device, per part
as `transformers_av.models.count_parameters` names the parts of each family."""

from transformers_av.cli import main
from transformers_av.presets import preset_parameter_counts


def test_preset_counts_use_the_family_part_names():
    counts = preset_parameter_counts("video-salmonn-13b")
    assert list(counts) == ["visual encoder", "speech encoder", "audio-event encoder", "connector", "LLM", "LM head",
                            "total"]
    assert counts["total"] == 14_999_637_488 == sum(v for k, v in counts.items() if k != "total")
    assert counts["LLM"] + counts["LM head"] == 13_015_874_560  # Vicuna-13B with the <AV> row, head included
    assert counts["speech encoder"] == 636_784_640 and counts["audio-event encoder"] == 90_311_664


def test_presets_command_prints_one_table_per_family(capsys):
    assert main(["presets"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "| preset | visual encoder | speech encoder | audio-event encoder | connector | LLM | LM head | total |" in lines
    assert "| preset | visual encoder | audio encoder | projectors | LLM | LM head | total |" in lines
    av_llm = next(line for line in lines if line.startswith("| av-llm-7b |"))
    assert av_llm.endswith("| 209,727,488 | 6,607,360,000 | 131,088,384 | 7,278,890,136 |")
    assert sum(line.startswith("| favor-") or line.startswith("| video-salmonn-") for line in lines) == 4
