"""The in-place KV cache gives exactly the outputs of transformers' own DynamicCache."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from gymrl.backends import kvcache  # noqa: E402
from gymrl.backends.kvcache import growing_cache  # noqa: E402


@pytest.fixture(scope="module")
def model():
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=97, hidden_size=32, intermediate_size=64,
                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                         max_position_embeddings=512)
    return LlamaForCausalLM(config).eval()


def _run(model, cache, steps: int, select_at: int | None = None):
    """Prefill a shared head, repeat it to 3 rows, prefill each row's rest, decode ``steps``
    tokens (dropping row 1 at ``select_at``); every step's logits."""
    g = torch.Generator().manual_seed(1)
    head = torch.randint(0, 97, (1, 7), generator=g)
    rest = torch.randint(0, 97, (3, 5), generator=g)
    out = []
    with torch.no_grad():
        model(input_ids=head, cache=cache, use_cache=True)
        cache.batch_repeat_interleave(3)
        logits = model(input_ids=rest, cache=cache, use_cache=True).logits
        out.append(logits)
        tokens = logits[:, -1].argmax(-1, keepdim=True)
        for step in range(steps):
            if step == select_at:
                keep = torch.tensor([0, 2])
                cache.batch_select_indices(keep)
                tokens = tokens[keep]
            logits = model(input_ids=tokens, cache=cache, use_cache=True).logits
            out.append(logits)
            tokens = logits[:, -1].argmax(-1, keepdim=True)
    return out, cache.get_seq_length()


@pytest.mark.parametrize("select_at", [None, 3])
def test_same_logits_as_dynamic_cache(model, monkeypatch, select_at) -> None:
    from transformers import DynamicCache

    # A small spare forces the buffer to grow several times during the run.
    monkeypatch.setattr(kvcache, "SPARE_TOKENS", 4)
    theirs, their_len = _run(model, DynamicCache(config=model.config), 12, select_at)
    cache = growing_cache(model.config)
    assert all(type(layer).__name__ == "GrowingLayer" for layer in cache.layers)
    mine, my_len = _run(model, cache, 12, select_at)
    assert my_len == their_len == 7 + 5 + 12
    for a, b in zip(theirs, mine, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6)


def test_appends_write_into_one_buffer(model) -> None:
    cache = growing_cache(model.config)
    with torch.no_grad():
        model(input_ids=torch.tensor([[1, 2, 3]]), cache=cache, use_cache=True)
        buffer = cache.layers[0]._k
        for token in range(5):
            model(input_ids=torch.tensor([[token]]), cache=cache, use_cache=True)
    layer = cache.layers[0]
    assert layer._k is buffer  # no reallocation while the spare room lasts
    assert layer.keys.shape[-2] == 8 and layer.keys.data_ptr() == buffer.data_ptr()


def test_crop_and_reset(model) -> None:
    cache = growing_cache(model.config)
    with torch.no_grad():
        model(input_ids=torch.tensor([[1, 2, 3, 4]]), cache=cache, use_cache=True)
        cache.crop(-2)
        assert cache.get_seq_length() == 2
        model(input_ids=torch.tensor([[5]]), cache=cache, use_cache=True)
        assert cache.get_seq_length() == 3
    cache.reset()
    assert cache.get_seq_length() == 0
