"""The client side of the session's pushes (conftest.py: `favor_pushed`, `av_llm_pushed`), run by `run_client` in a
fresh interpreter whose huggingface_hub talks to the local Hub server:

    python push_client.py FAMILY STAGED ARGUMENTS_JSON

STAGED/model holds the tiny model with its processor (and, for FAVOR, STAGED/b model B; for the Audio-Visual LLM,
STAGED/nan a model with NaN weights). ARGUMENTS_JSON gives the repository, the base models and the processor
inputs. What comes back over HTTP is written to STAGED/out: the weights as safetensors files, the Hub processor's
encodings (processor.pt) and result.json (commit ids, the classes loaded, the refusals)."""

import json
import sys
from pathlib import Path

import torch
from safetensors.torch import save_file
from transformers import AutoModel, AutoModelForMultimodalLM, AutoProcessor

import transformers_av  # noqa: F401  (registers the Auto classes and the checked uploads)
from transformers_av.hub import EvaluationResult, TrainingDetails, UploadRefusedError, push_folder_to_hub, push_to_hub


def dump(model, path):
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, path)


def load_main(repo, out, processor_inputs):
    """`repo`'s main loaded back through the Auto classes: its weights (main.safetensors) and its processor's
    encodings (processor.pt); returns the classes loaded."""
    loaded = AutoModelForMultimodalLM.from_pretrained(repo)
    hub_processor = AutoProcessor.from_pretrained(repo)
    dump(loaded, out / "main.safetensors")
    torch.save(dict(hub_processor(**processor_inputs).items()), out / "processor.pt")
    return [type(loaded).__name__, type(hub_processor).__name__]


def favor(staged, model, processor, repo, base_models, processor_inputs):
    """Model A (+ processor, training and evaluation details on the card) to main, model B to the branch
    "experiment" then to main, a LoRA adapter to its own repository."""
    from peft import PeftModel, get_peft_model_state_dict

    from transformers_av.training import apply_lora

    out = staged / "out"
    model_b = AutoModelForMultimodalLM.from_pretrained(staged / "b").eval()
    first = model.push_to_hub(
        repo, processor=processor, base_models=base_models,
        training=TrainingDetails(datasets=["org/av-sync"], hyperparameters={"learning_rate": 1e-4, "num_train_epochs": 2}),
        eval_results=[EvaluationResult("AV sync test", "org/av-sync", "accuracy", 0.75, split="test")],
    )
    second = model_b.push_to_hub(repo, revision="experiment", commit_message="model B")
    classes = load_main(repo, out, processor_inputs)  # main still holds model A
    dump(AutoModelForMultimodalLM.from_pretrained(repo, revision="experiment"), out / "experiment.safetensors")
    dump(AutoModel.from_pretrained(repo), out / "base_model.safetensors")

    # main moves on; the first commit stays loadable by its id (fresh cache: the files come over HTTP again)
    third = model_b.push_to_hub(repo, commit_message="model B on main")
    dump(AutoModelForMultimodalLM.from_pretrained(repo, revision=first.oid, cache_dir=out / "fresh"), out / "pinned.safetensors")
    dump(AutoModelForMultimodalLM.from_pretrained(repo, cache_dir=out / "fresh"), out / "main_after.safetensors")

    # LoRA run: adapter + trained connector copy, loaded back on top of the Hub base model at the first commit
    torch.manual_seed(3)
    lora = apply_lora(AutoModelForMultimodalLM.from_pretrained(staged / "model"), r=4, alpha=8)
    with torch.no_grad():
        for name, parameter in lora.named_parameters():
            if "lora_B" in name:
                parameter.normal_()
    push_to_hub(lora, f"{repo}-lora", finetuned_from=repo)  # PEFT's own push has no card
    save_file({k: v.contiguous() for k, v in get_peft_model_state_dict(lora).items()}, out / "adapter_pushed.safetensors")
    base = AutoModelForMultimodalLM.from_pretrained(repo, revision=first.oid)
    loaded = PeftModel.from_pretrained(base, f"{repo}-lora")
    save_file({k: v.contiguous() for k, v in get_peft_model_state_dict(loaded).items()}, out / "adapter_loaded.safetensors")
    commits = {"first": first.oid, "second": second.oid, "third": third.oid, "main": third.oid}
    return {"commits": commits, "classes": classes}


def av_llm(staged, model, processor, repo, base_models, processor_inputs):
    """Refused pushes first (NaN weights, NaN folder, token ids that disagree), then the model and its processor in
    one commit."""
    refusals = {}

    def refused(repo_id, push):
        try:
            push()
        except UploadRefusedError as error:
            refusals[repo_id] = str(error)
        else:
            refusals[repo_id] = None

    broken = AutoModelForMultimodalLM.from_pretrained(staged / "nan")
    refused("user/av-llm-nan", lambda: broken.push_to_hub("user/av-llm-nan", processor=processor))
    refused("user/av-llm-nan-folder", lambda: push_folder_to_hub(staged / "nan", "user/av-llm-nan-folder"))
    swapped = AutoModelForMultimodalLM.from_pretrained(staged / "model", visual_modality_token_id=514,
                                                       audio_modality_token_id=513)
    refused("user/av-llm-wrong-ids", lambda: swapped.push_to_hub("user/av-llm-wrong-ids", processor=processor))
    refused("user/av-llm-wrong-ids-processor",
            lambda: processor.push_to_hub("user/av-llm-wrong-ids-processor", config=swapped.config))

    info = model.push_to_hub(repo, processor=processor, base_models=base_models)
    classes = load_main(repo, staged / "out", processor_inputs)
    return {"commits": {"first": info.oid, "main": info.oid}, "classes": classes, "refusals": refusals}


if __name__ == "__main__":
    family, staged, arguments = sys.argv[1], Path(sys.argv[2]), json.loads(sys.argv[3])
    pushed_model = AutoModelForMultimodalLM.from_pretrained(staged / "model").eval()
    pushed_processor = AutoProcessor.from_pretrained(staged / "model")
    result = {"favor": favor, "av_llm": av_llm}[family](staged, pushed_model, pushed_processor, **arguments)
    (staged / "out" / "result.json").write_text(json.dumps(result))
