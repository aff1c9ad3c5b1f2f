"""Plain `transformers.Trainer` on a FAVOR model, the way its documentation writes it: a collator that calls the
processor, `compute_metrics` on `EvalPrediction.predictions`. The model's `keys_to_ignore_at_inference` leave the
logits alone in the predictions (not the losses, the tower outputs or the audio-visual tokens)."""

import numpy as np
import torch
from transformers import EvalPrediction, Trainer, TrainingArguments

from transformers_av import FavorForConditionalGeneration
from transformers_av.presets.tiny import tiny_favor_config, tiny_processor

IMAGE = 28
QUESTIONS = ["What colour is the square?", "When does it beep?", "Is there a sound?"]
ANSWERS = ["red", "at one second", "yes"]


def make_examples(n=3):
    rng = np.random.default_rng(0)
    return [
        {
            "question": QUESTIONS[i % 3],
            "answer": ANSWERS[i % 3],
            "frames": rng.integers(0, 256, (2 + i, 48, 48, 3), dtype=np.uint8),
            "waveform": rng.standard_normal(16000 * (1 + i)).astype(np.float32) * 0.1,
        }
        for i in range(n)
    ]


def token_accuracy(prediction: EvalPrediction) -> dict[str, float]:
    logits, labels = prediction.predictions, prediction.label_ids  # (N, L, V), (N, L)
    predicted = logits[:, :-1].argmax(-1)
    targets = labels[:, 1:]
    scored = targets != -100
    return {"token_accuracy": float((predicted[scored] == targets[scored]).mean())}


def test_trainer_evaluate_hands_compute_metrics_the_logits(tmp_path):
    torch.manual_seed(0)
    config = tiny_favor_config("video_salmonn", image_size=IMAGE)
    model = FavorForConditionalGeneration(config)
    processor = tiny_processor(config)

    def collate(rows):
        return processor(
            text=[r["question"] for r in rows],
            videos=[r["frames"] for r in rows],
            audio=[r["waveform"] for r in rows],
            sampling_rate=16000,
            answers=[r["answer"] for r in rows],
            padding_side="right",
        )

    examples = make_examples()
    seen = {}

    def compute_metrics(prediction):
        seen["predictions"] = prediction.predictions
        return token_accuracy(prediction)

    args = TrainingArguments(
        output_dir=str(tmp_path), per_device_eval_batch_size=3, report_to=[], remove_unused_columns=False,
        use_cpu=True, eval_accumulation_steps=None,
    )
    trainer = Trainer(model=model, args=args, data_collator=collate, eval_dataset=examples, compute_metrics=compute_metrics)
    metrics = trainer.evaluate()

    batch = collate(examples)
    model.eval()
    with torch.no_grad():
        expected = model(**batch)
    assert isinstance(seen["predictions"], np.ndarray)  # the logits alone, not a tuple led by the two losses
    assert seen["predictions"].shape == tuple(expected.logits.shape)
    by_hand = token_accuracy(EvalPrediction(expected.logits.numpy(), batch["labels"].numpy()))["token_accuracy"]
    assert metrics["eval_token_accuracy"] == by_hand
    # eval_loss is the model's loss (LM + weighted diversity) on the same batch (one batch: the mean of one value)
    assert abs(metrics["eval_loss"] - float(expected.loss)) < 1e-5  # fp32 forward recomputed: a few ulps of O(6)
