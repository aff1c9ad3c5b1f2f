"""The tasks of the three papers: benchmark tags as in their tables, the papers' prompts and judge prompts verbatim,
multiple-choice layouts and rules selectable per paper."""

from __future__ import annotations

import pytest

from transformers_av.evaluation import TASKS, get_task
from transformers_av.evaluation.tasks import CHOICE_FORMATS


def _tagged(benchmark: str) -> set[str]:
    return {name for name, task in TASKS.items() if benchmark in task.benchmarks}


def test_benchmark_tags_follow_each_papers_table():
    # FAVOR §4.1 table: ASR, AC, IC, OCR, VQA, Video QA, AVSR, AVSD, ISQA, AVSSD, AVM
    assert _tagged("AVEB") == {"asr_librispeech", "aac_audiocaps", "ic_flickr30k", "ocr_textvqa", "vqa_gqa",
                               "nextqa_mc", "avsr_how2", "avsd", "isqa", "avssd", "avm"}
    # video-SALMONN Table 1: ASR, AAC, IC, OCR, VQA, Video QA, AVSR, AVQA (Ego4D + Presentation-QA), AVSSD, AVM
    assert _tagged("SAVE") == {"asr_librispeech", "aac_audiocaps", "ic_flickr30k", "ocr_textvqa", "vqa_gqa",
                               "nextqa_mc", "avsr_how2", "avqa_ego4d_mc", "avqa_presentation_mc", "avssd", "avm"}
    # Shu et al. Tables 1-3 and 8
    assert _tagged("AV-LLM") == {"msvd_qa", "msrvtt_qa", "activitynet_qa", "avllm_avsd", "avllm_avssd", "music_avqa",
                                 "aac_clotho", "aac_audiocaps", "vcgbench_generic", "vcgbench_temporal",
                                 "vcgbench_consistency"}
    assert set(TASKS) == _tagged("AVEB") | _tagged("SAVE") | _tagged("AV-LLM")
    with pytest.raises(KeyError, match="available: asr_librispeech"):
        get_task("nope")


def test_judge_prompts_are_the_papers_verbatim():
    # FAVOR Appendix B, Table 6
    avsd = get_task("avsd").judge_prompts["judge"]
    assert avsd.template == (
        'Given the question "QUESTION", is the answer "HYPOTHESIS" equivalent to the answer "REFERENCE"? Answer "Yes" '
        'if they are equivalent, and "No" if they are different.'
    )
    # FAVOR Appendix B, Table 6 = video-SALMONN Appendix D, Table 8 (VGGSS)
    vggss = get_task("avssd").judge_prompts["judge"]
    assert vggss.template == (
        'Is the sound source mentioned in answer "REFERENCE" the same as the sound source mentioned in answer '
        '"HYPOTHESIS"? Answer "Yes" if they are the same, and "No" if they are different or one does not mention the '
        "sound source."
    )
    assert avsd.verbatim and vggss.verbatim and avsd.system is None
    assert "Table 6" in avsd.source and "Table 8" in vggss.source
    # filled in one pass: a reference that itself contains a placeholder name is not substituted again
    filled = avsd.render({"question": "Is he talking?", "prediction": "Yes, he is.", "reference": "No REFERENCE"})
    assert filled == ('Given the question "Is he talking?", is the answer "Yes, he is." equivalent to the answer '
                      '"No REFERENCE"? Answer "Yes" if they are equivalent, and "No" if they are different.')
    with pytest.raises(KeyError, match="needs question"):
        avsd.render({"prediction": "a", "reference": "b"})


def test_isqa_and_avm_use_the_papers_fixed_prompt_and_exact_match():
    isqa = get_task("isqa")
    # FAVOR §4.1: 'The text prompt is always "answer the question in the audio about the image"'
    assert isqa.format_prompt({"id": "0"}) == "answer the question in the audio about the image"
    assert isqa.prompt_verbatim and isqa.metric == "exact_match" and not isqa.is_judged
    assert get_task("avm").metric == "exact_match"
    assert isqa.with_options(rule="gqa").metric == "gqa"
    assert get_task("avm").with_options(rule="yes_no").metric == "yes_no"
    with pytest.raises(ValueError, match="can be scored by exact_match, gqa; got rule 'judge'"):
        isqa.with_options(rule="judge")


SAMPLE = {"id": "7", "question": "What game are the people likely playing based on the video and audio?",
          "choices": ["Chess", "Scrabble", "Monopoly", "Risk", "Settlers of Catan"], "answer": "Monopoly",
          "video": "a.mp4"}


def test_multiple_choice_layouts_per_paper():
    # video-SALMONN Figure 7, verbatim
    assert get_task("avqa_ego4d_mc").format_prompt(SAMPLE) == (
        "What game are the people likely playing based on the video and audio? Choices: A. Chess, B. Scrabble, "
        "C. Monopoly, D. Risk, E. Settlers of Catan"
    )
    assert get_task("avqa_ego4d_mc").prompt_verbatim and get_task("avqa_presentation_mc").choice_format == "save"
    # NExT-QA: FAVOR Table 5 / video-SALMONN Table 6 ("Options/Choose one from: (Add choices here during inference)")
    nextqa = get_task("nextqa_mc")
    assert nextqa.format_prompt(SAMPLE) == (
        "What game are the people likely playing based on the video and audio? Options/Choose one from: Chess, "
        "Scrabble, Monopoly, Risk, Settlers of Catan"
    )
    assert not nextqa.prompt_verbatim  # the list format of the choices is not printed
    lenient = nextqa.with_options(rule="multiple_choice_lenient", choice_format="letters")
    assert lenient.format_prompt({**SAMPLE, "choices": ["mall", "river"]}) == (
        f"{SAMPLE['question']}\nOptions:\n(A) mall\n(B) river\nAnswer with the letter of the correct option."
    )
    assert (lenient.metric, nextqa.metric) == ("multiple_choice_lenient", "multiple_choice")
    assert nextqa.with_options(choice_format="save").prompt_verbatim
    assert set(CHOICE_FORMATS) == {"favor", "save", "letters"}
    with pytest.raises(ValueError, match="not multiple choice"):
        get_task("vqa_gqa").with_options(choice_format="save")
    with pytest.raises(ValueError, match="has no `choices`"):
        nextqa.format_prompt({"id": "1", "question": "q"})


def test_media_checks_and_fixed_prompts():
    task = get_task("nextqa_mc")
    assert task.media_of(SAMPLE) == {"video": "a.mp4"}
    with pytest.raises(ValueError, match="sample '7' lacks video"):
        task.media_of({**SAMPLE, "video": None})
    # SAVE How2 prompt is fixed (verbatim from the annotation file), whatever the manifest's question.
    assert get_task("avsr_how2").format_prompt({"id": "0"}) == (
        "Can you transcribe the speech into text, paying attention to the video?"
    )
    avsd = get_task("avsd").format_prompt({"id": "0", "question": "And then?", "history": [["Is it a man?", "Yes."]]})
    assert avsd == "Q: Is it a man?\nA: Yes.\nQ: And then?\nA:"
    consistency = get_task("vcgbench_consistency")
    assert consistency.question_fields == ("question", "question2")
    assert consistency.format_prompt({"id": "0", "question2": "What happens?"}, "question2") == "What happens?"


def test_cli_refuses_a_rule_the_task_does_not_allow(capsys):
    from transformers_av.cli import main

    assert main(["evaluate", "--task", "avm", "--rule", "gqa"]) == 2
    assert capsys.readouterr().err.strip() == (
        "transformers-av evaluate: error: task avm can be scored by exact_match, yes_no; got rule 'gqa'"
    )
