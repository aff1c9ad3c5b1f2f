"""PEFT's standard recipe on both families: `LoraConfig(task_type="CAUSAL_LM")` without `target_modules` adapts the
LLM's attention projections only (each family registers its targets with PEFT on `import transformers_av`)."""

import re

import pytest
import torch
from peft import LoraConfig, get_peft_model
from peft.tuners.lora import LoraLayer

from transformers_av import AvLlmForConditionalGeneration, FavorForConditionalGeneration
from transformers_av.models.common.family import LLM_LORA_TARGETS
from transformers_av.presets.tiny import tiny_av_llm_config, tiny_favor_config

FAMILIES = {
    "favor": lambda: FavorForConditionalGeneration(tiny_favor_config("video_salmonn", image_size=28)),
    "av_llm": lambda: AvLlmForConditionalGeneration(tiny_av_llm_config()),
}


def lora_wrapped(model) -> list[str]:
    return [name for name, module in model.named_modules() if isinstance(module, LoraLayer)]


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_lora_without_targets_adapts_the_llm_attention_only(family):
    torch.manual_seed(0)
    model = FAMILIES[family]()
    encoders = {name: {k: v.clone() for k, v in module.state_dict().items()}
                for name, module in model.model.encoder_modules().items()}
    peft_model = get_peft_model(model, LoraConfig(task_type="CAUSAL_LM", r=4, lora_alpha=8))
    wrapped = lora_wrapped(peft_model)
    layers = model.config.text_config.num_hidden_layers
    assert len(wrapped) == 4 * layers
    assert all(re.search(r"\.model\.language_model\.layers\.\d+\.self_attn\.[qkvo]_proj$", name) for name in wrapped)
    trainable = [name for name, p in peft_model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in name for name in trainable)

    # one optimiser step on a text batch moves the adapters and leaves every encoder weight bit-identical
    optimizer = torch.optim.SGD([p for p in peft_model.parameters() if p.requires_grad], lr=1.0)
    ids = torch.randint(10, 100, (2, 12))
    before = {n: p.detach().clone() for n, p in peft_model.named_parameters() if "lora_B" in n}
    peft_model(input_ids=ids, labels=ids).loss.backward()
    optimizer.step()
    assert any(not torch.equal(p, before[n]) for n, p in peft_model.named_parameters() if n in before)
    for name, module in model.model.encoder_modules().items():
        for key, value in module.state_dict().items():
            assert torch.equal(value, encoders[name][key]), (name, key)


def test_plain_leaf_names_would_also_adapt_an_encoder_which_the_documented_regex_avoids():
    # why the targets are a regex: Whisper's attention layers share the LLM's leaf names
    names = ["q_proj", "k_proj", "v_proj", "o_proj"]
    by_name = get_peft_model(FAMILIES["favor"](), LoraConfig(target_modules=names, r=4))
    assert any(".speech_encoder." in name for name in lora_wrapped(by_name))
    by_regex = get_peft_model(FAMILIES["favor"](), LoraConfig(target_modules=LLM_LORA_TARGETS["attention"], r=4))
    assert not any(".speech_encoder." in name for name in lora_wrapped(by_regex))
    assert len(lora_wrapped(by_regex)) == 4 * by_regex.config.text_config.num_hidden_layers
