"""Decoding through the cascade cache (the shared head's keys kept once) against the padded
batch with a copy of them per row: same tokens, log-probs and kept per-row caches."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from tiny_models import ARCHITECTURES, tiny_causal_lm  # noqa: E402

from gymrl.backends.cascade import CascadeCache  # noqa: E402
from gymrl.backends.decode import decode  # noqa: E402
from gymrl.backends.kvcache import RowCaches, growing_cache  # noqa: E402


def batch(head: int = 20, rests: tuple[int, ...] = (6, 1, 4)):
    """Rows sharing ``head`` tokens, each with its own rest, padded in the middle (as the hf
    backend lays out a fresh batch)."""
    g = torch.Generator().manual_seed(3)
    shared = torch.randint(3, 300, (head,), generator=g).tolist()
    width = max(rests)
    ids, attention = [], []
    for n in rests:
        ids.append(shared + [0] * (width - n) + torch.randint(3, 300, (n,), generator=g).tolist())
        attention.append([1] * head + [0] * (width - n) + [1] * n)
    return torch.tensor(ids), torch.tensor(attention)


def run(model, cache, ids, attention, head: int, temperature: float):
    """Decode 10 tokens (row 1 leaves after 3), keeping every row's cache as it leaves."""
    kept = RowCaches()

    prompts = [ids[row][attention[row].bool()].tolist() for row in range(ids.shape[0])]

    def keep(row, b, cache, now_attention, generated):
        kept.keep(row, prompts[row] + generated[:-1], cache, b, now_attention[b])

    if isinstance(cache, CascadeCache):
        cache.prefill(ids[:1, :head])
    else:
        model(input_ids=ids[:1, :head], cache=cache, use_cache=True)
    cache.batch_repeat_interleave(ids.shape[0])
    torch.manual_seed(7)
    tokens, logprobs = decode(model, ids, attention, cache, max_new_tokens=10,
                              temperature=temperature, top_p=1.0, eos_ids=set(),
                              finished=lambda row, out: row == 1 and len(out) == 3,
                              on_exit=keep)
    return tokens, logprobs, kept


@pytest.mark.parametrize("temperature", [0.0, 1.0])
@pytest.mark.parametrize("kind", sorted(ARCHITECTURES))
def test_cascade_cache_decodes_as_the_padded_batch(kind, temperature):
    model = tiny_causal_lm(kind).eval()
    ids, attention = batch()
    with torch.inference_mode():
        theirs = run(model, growing_cache(model.config), ids, attention, 20, temperature)
        mine = run(model, CascadeCache(model), ids, attention, 20, temperature)
    assert mine[0] == theirs[0] and [len(t) for t in mine[0]] == [10, 3, 10]
    for a, b in zip(theirs[1], mine[1], strict=True):
        assert a == pytest.approx(b, abs=1e-5)
    assert len(mine[2]) == len(theirs[2]) == 3
    for row in range(3):
        their_ids, their_layers = theirs[2]._rows[row]
        my_ids, my_layers = mine[2]._rows[row]
        assert my_ids == their_ids
        for (k0, v0), (k1, v1) in zip(their_layers, my_layers, strict=True):
            assert k0.shape == k1.shape and torch.allclose(k0, k1, atol=1e-5)
            assert torch.allclose(v0, v1, atol=1e-5)


def test_the_shared_head_is_kept_once_and_rows_only_after_it():
    model = tiny_causal_lm("llama").eval()
    ids, attention = batch()
    cache = CascadeCache(model)
    with torch.inference_mode():
        cache.prefill(ids[:1, :20])
        cache.batch_repeat_interleave(3)
        cache.logits(ids[:, 20:], attention, (attention.cumsum(-1) - 1)[:, 20:], True)
    key, _ = cache.prefix[0]
    assert key.shape[:2] == (2, 20)  # (key heads, head tokens): one copy, not one per row
    own_key, _ = cache.own[0]
    assert own_key.shape[1] == 3 and cache.get_seq_length() == 20 + 6
    with pytest.raises(ValueError, match="before their own tokens"):
        cache.batch_repeat_interleave(2)
