"""transformers' chat pipelines serve the package's models as they are: `pipeline("image-text-to-text", ...)` and
`pipeline("any-to-any", ...)` take a FAVOR / video-SALMONN / Audio-Visual LLM model with its processor, answer a chat
message holding a generated clip (as a video, or as an audio) or picture, log nothing (no "model not supported" error: the
families are listed in the pipelines' model tables at `import transformers_av`), and produce exactly the ids
`model.generate` produces on the processor's output for the same messages."""

import importlib.util
import logging

import pytest
import torch
from transformers import pipeline
from transformers.models.auto.modeling_auto import (
    MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES,
    MODEL_FOR_MULTIMODAL_LM_MAPPING_NAMES,
)

import transformers_av  # noqa: F401  (registers the families)
from transformers_av.presets.tiny import TINY_MODELS
from transformers_av.synthetic.media import make_av_clip
from transformers_av.testing import make_image

GENERATION = {"max_new_tokens": 4, "do_sample": False}
PRESETS = {"tiny-video-salmonn": {"image_size": 28}, "tiny-favor": {"image_size": 28}, "tiny-av-llm": {}}


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    folder = tmp_path_factory.mktemp("pipeline")
    clip = make_av_clip(folder / "clip.mp4", seconds=2.0, fps=4)
    make_image(folder / "picture.png", color="blue", size=(48, 64))
    # the clip as a video (its sound track is the audio), its sound track alone as an audio, a picture
    return {"video": str(clip.path), "audio": str(clip.path), "image": str(folder / "picture.png")}


@pytest.fixture(scope="module")
def models():
    built = {}
    for name, overrides in PRESETS.items():
        torch.manual_seed(0)
        model, processor = TINY_MODELS[name].build(**overrides)
        built[name] = (model.eval(), processor)
    return built


@pytest.fixture
def without_torchvision_check(monkeypatch):
    """transformers' `AnyToAnyPipeline` asks for torchvision whenever a model takes images or video, for transformers'
    own torchvision-backed image and video processors. These processors decode with PyAV and resize with torch, so
    where torchvision is not installed (this project does not need it) that one check is lifted; everything else runs
    unchanged."""
    if importlib.util.find_spec("torchvision") is not None:
        return
    import transformers.pipelines.any_to_any as any_to_any

    check = any_to_any.requires_backends

    def requires_backends_but_torchvision(obj, backends):
        backends = [backends] if isinstance(backends, str) else list(backends)
        check(obj, [backend for backend in backends if backend != "torchvision"])

    monkeypatch.setattr(any_to_any, "requires_backends", requires_backends_but_torchvision)


class LogRecords(logging.Handler):
    """Collects what transformers logs at WARNING and above (it logs through its own library logger)."""

    def __init__(self):
        super().__init__(logging.WARNING)
        self.records: list[logging.LogRecord] = []

    def emit(self, record):
        self.records.append(record)


def test_the_families_are_listed_in_the_pipeline_tables():
    for model_type, class_name in (("favor", "FavorForConditionalGeneration"),
                                   ("av_llm", "AvLlmForConditionalGeneration")):
        assert MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES[model_type] == class_name
        assert MODEL_FOR_MULTIMODAL_LM_MAPPING_NAMES[model_type] == class_name


@pytest.mark.parametrize("task", ["image-text-to-text", "any-to-any"])
@pytest.mark.parametrize("medium", ["video", "audio", "image"])
@pytest.mark.parametrize("name", list(PRESETS))
def test_pipeline_answers_on_a_clip_like_generate(name, medium, task, models, media, without_torchvision_check):
    model, processor = models[name]
    messages = [{"role": "user", "content": [{"type": medium, "path": media[medium]},
                                             {"type": "text", "text": "What beeps?"}]}]
    records = LogRecords()
    library_logger = logging.getLogger("transformers")
    library_logger.addHandler(records)
    try:
        chat = pipeline(task, model=model, processor=processor)
        answer = chat(text=messages, generate_kwargs=GENERATION, return_tensors=True)
        text_answer = chat(text=messages, generate_kwargs=GENERATION, return_full_text=False)
    finally:
        library_logger.removeHandler(records)
    assert [record.getMessage() for record in records.records] == []

    inputs = processor.apply_chat_template(messages, tokenize=True, return_dict=True)
    assert ("pixel_values_videos" in inputs) == (medium != "audio")
    with torch.no_grad():
        expected = model.generate(**inputs, **GENERATION)[0]
    assert torch.equal(answer[0]["generated_token_ids"], expected)
    new_tokens = expected[inputs["input_ids"].shape[1]:]
    assert len(new_tokens) == GENERATION["max_new_tokens"]
    # the pipeline cuts the decoded prompt off the decoded sequence: the answer's words, SentencePiece's space before
    # the first one aside
    assert text_answer[0]["generated_text"].strip() == processor.decode(new_tokens, skip_special_tokens=True).strip()
