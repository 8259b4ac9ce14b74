"""The joint prompt-and-rows pass (cascade attention) against the model's own padded forward."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from tiny_models import ARCHITECTURES, tiny_causal_lm  # noqa: E402

from gymrl.learner import cascade  # noqa: E402
from gymrl.learner.grpo import shared_head, token_logprobs  # noqa: E402


def model_of(kind: str) -> object:
    return tiny_causal_lm(kind).train()


def rows_after_a_prompt(prompt: int = 40, lengths: tuple[int, ...] = (9, 3, 12, 1)):
    """Right-padded rows sharing ``prompt`` tokens, each with its own ``lengths`` after it;
    every own token but a row's second is a policy token (env tokens sit between)."""
    torch.manual_seed(1)
    shared = torch.randint(3, 300, (prompt,))
    width = prompt + max(lengths)
    ids = torch.zeros(len(lengths), width, dtype=torch.long)
    attention = torch.zeros_like(ids)
    mask = torch.zeros_like(ids)
    for r, n in enumerate(lengths):
        ids[r, :prompt + n] = torch.cat([shared, torch.randint(3, 300, (n,))])
        attention[r, :prompt + n] = 1
        mask[r, prompt:prompt + n] = 1
        mask[r, prompt + 1] = 0 if n > 2 else mask[r, prompt + 1]
    return ids, attention, mask


@pytest.mark.parametrize("kind", sorted(ARCHITECTURES))
def test_the_joint_pass_gives_the_padded_forwards_states_and_gradients(kind):
    model = model_of(kind)
    ids, attention, mask = rows_after_a_prompt()
    head = shared_head(ids, mask)
    assert head == 40 and cascade.supports(model, ids, attention)

    states = model.model(input_ids=ids, attention_mask=attention).last_hidden_state[:, :-1]
    plain = states[mask[:, 1:].bool()]
    joint = cascade.policy_states(model, ids, attention, mask, head)
    assert joint.shape == plain.shape
    assert torch.allclose(joint, plain, atol=1e-5)
    weights = torch.randn_like(plain)  # any scalar of the states: gradients must agree
    params = list(model.model.parameters())
    for a, b in zip(torch.autograd.grad((plain * weights).sum(), params),
                    torch.autograd.grad((joint * weights).sum(), params), strict=True):
        assert (a - b).norm() <= 1e-5 * a.norm()
    # The model's own attention implementation is back in place afterwards.
    assert model.config._attn_implementation == "sdpa"


@pytest.mark.parametrize("kind", sorted(ARCHITECTURES))
def test_token_logprobs_takes_the_joint_pass_and_agrees_with_the_plain_one(kind, monkeypatch):
    model = model_of(kind)
    ids, attention, mask = rows_after_a_prompt()
    calls = []
    real = cascade.Layout.attend

    def counting(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(cascade.Layout, "attend", counting)
    plain, plain_entropy = token_logprobs(model, ids, attention, mask, 0.7, min_shared=10**9)
    assert not calls
    joint, joint_entropy = token_logprobs(model, ids, attention, mask, 0.7, min_shared=8)
    assert len(calls) == model.config.num_hidden_layers
    assert torch.allclose(joint, plain, atol=1e-5)
    assert torch.allclose(joint_entropy, plain_entropy, atol=1e-4)
    assert joint[mask == 0].abs().max() == 0 and joint[mask == 1].abs().min() > 0


def test_models_it_cannot_match_take_the_padded_pass():
    model = model_of("llama")
    ids, attention, mask = rows_after_a_prompt()
    assert cascade.supports(model, ids, attention)
    left_padded = attention.flip(1)
    assert not cascade.supports(model, ids, left_padded)
    model.gradient_checkpointing_enable()
    assert not cascade.supports(model, ids, attention)
    windowed = tiny_causal_lm("qwen2", use_sliding_window=True, sliding_window=16,
                              max_window_layers=0)
    assert not cascade.supports(windowed, ids, attention)
