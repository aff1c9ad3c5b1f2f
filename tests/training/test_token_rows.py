"""The Audio-Visual LLM's modality token stands at the position of its sample (Shu et al. §3.2) and its embedding row
trains with the projectors while the rest of a frozen vocabulary does not (stage 1; LoRA and the stage-1 run are
tested in test_av_llm_stages.py)."""

from __future__ import annotations

import numpy as np
import torch

from transformers_av import AvLlmForConditionalGeneration
from transformers_av.presets.tiny import tiny_av_llm_config, tiny_av_llm_processor
from transformers_av.training.token_rows import added_token_ids, train_added_token_rows


def test_a_modality_token_inside_a_question_is_where_its_sample_goes():
    config = tiny_av_llm_config()
    processor = tiny_av_llm_processor(config)
    tone = np.sin(np.linspace(0, 800 * np.pi, 16000)).astype(np.float32)
    batch = processor(text=["Which animal makes <AUD> this sound?", "<AUD> Which animal makes this sound?"],
                      audio=[tone, tone], sampling_rate=16000)
    tokenizer = processor.tokenizer
    for i, (before, after) in enumerate([("Which animal makes", "this sound?"), ("", "Which animal makes this sound?")]):
        ids = batch["input_ids"][i][batch["attention_mask"][i].bool()].tolist()
        start = ids.index(config.audio_modality_token_id)
        count = processor.num_media_tokens(0, config.num_audio_segments, visual=False, audio=True)
        # the sample right after its modality token, where the token was written
        assert ids[start + 1 : start + 1 + count] == [config.media_token_id] * count
        assert config.media_token_id not in ids[start + 1 + count :]
        assert tokenizer.decode(ids[:start], skip_special_tokens=True).strip() == f"USER: {before}".strip()
        assert tokenizer.decode(ids[start + 1 + count :], skip_special_tokens=True).strip() == f"{after}\nASSISTANT:"


def test_only_the_added_rows_of_a_frozen_vocabulary_train():
    torch.manual_seed(0)
    config = tiny_av_llm_config()
    model = AvLlmForConditionalGeneration(config)
    model.freeze_encoders()
    model.model.language_model.requires_grad_(False)  # stage 1: the LLM and its head are frozen
    model.get_output_embeddings().requires_grad_(False)
    assert added_token_ids(model) == [config.media_token_id, *config.modality_token_ids.values()]
    assert train_added_token_rows(model) == added_token_ids(model)
    from transformers_av.training import trainable_parameter_summary

    summary = trainable_parameter_summary(model)  # the 4 rows of the 64-wide embedding, not the whole table
    assert (summary["LLM"]["trainable"], summary["LM head"]["trainable"]) == (4 * 64, 0)
    processor = tiny_av_llm_processor(config)
    batch = processor(text="<VIS> What colour?", images=np.full((32, 32, 3), 200, np.uint8), answers="grey")
    model(**batch).loss.backward()
    gradient = model.get_input_embeddings().weight.grad
    assert gradient.abs().sum(-1).nonzero()[:, 0].tolist() == [config.visual_modality_token_id]
    # kept out of weight decay by FavorTrainer (a decayed frozen row would move)
    from transformers import TrainingArguments

    from transformers_av.training import FavorTrainer

    args = TrainingArguments(output_dir="unused", use_cpu=True, report_to=[], remove_unused_columns=False)
    decayed = FavorTrainer(model=model, args=args).get_decay_parameter_names(model)
    assert "model.language_model.embed_tokens.weight" not in decayed
    assert "model.connector.temporal_projection.weight" in decayed
    # a fully trained LLM trains its whole table already: nothing to do
    full = AvLlmForConditionalGeneration(config)
    assert train_added_token_rows(full) == []
