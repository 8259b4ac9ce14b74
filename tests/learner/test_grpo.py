"""GRPO maths against hand-computed values on tiny tensors."""

from __future__ import annotations

import math

import pytest
import torch

from gymrl.learner.grpo import aggregate, group_advantages, per_token_loss, turn_advantages
from gymrl.learner.sequences import Sequence
from gymrl.learner.train import Trainer


def test_group_advantages_hand_computed():
    rewards = torch.tensor([1.0, 0.0, 0.5, 0.5, 2.0, 0.0])
    groups = torch.tensor([0, 0, 1, 1, 2, 2])
    adv, flat = group_advantages(rewards, groups, "group", eps=0.0)
    # group 0: mean .5, std (unbiased) sqrt(.5); group 1 equal; group 2: mean 1, std sqrt(2)
    s0 = math.sqrt(0.5)
    assert adv[:2].tolist() == pytest.approx([0.5 / s0, -0.5 / s0])
    assert flat == 1
    assert adv[4:].tolist() == pytest.approx([1 / math.sqrt(2), -1 / math.sqrt(2)])


def test_equal_reward_groups_give_zero_not_nan():
    adv, flat = group_advantages(torch.tensor([0.3, 0.3, 0.3, 0.3]), torch.tensor([0, 0, 1, 1]))
    assert torch.all(adv == 0) and flat == 2 and not torch.isnan(adv).any()


def test_scale_none_and_batch():
    rewards, groups = torch.tensor([1.0, 0.0, 3.0, 1.0]), torch.tensor([0, 0, 1, 1])
    none, _ = group_advantages(rewards, groups, "none")
    assert none.tolist() == pytest.approx([0.5, -0.5, 1.0, -1.0])
    batch, _ = group_advantages(rewards, groups, "batch", eps=0.0)
    std = rewards.std(unbiased=True).item()
    assert batch.tolist() == pytest.approx([0.5 / std, -0.5 / std, 1 / std, -1 / std])
    with pytest.raises(ValueError, match="group, batch, none"):
        group_advantages(rewards, groups, "sequence")


def test_clipped_surrogate_hand_computed():
    logp = torch.log(torch.tensor([[0.5, 0.9], [0.2, 0.2]]))
    old = torch.log(torch.tensor([[0.25, 0.9], [0.4, 0.2]]))
    adv = torch.tensor([1.0, -1.0])
    loss, stats = per_token_loss(logp, old, adv, epsilon=0.2, epsilon_high=0.28)
    # row 0: ratios 2.0 (clipped to 1.28 with A>0) and 1.0; row 1: ratios 0.5 and 1.0, A<0:
    # -min(0.5*-1, 0.8*-1) = 0.8 (the pessimistic, clipped value)
    assert loss.flatten().tolist() == pytest.approx([-1.28, -1.0, 0.8, 1.0])
    assert stats["clipped"].tolist() == [[1.0, 0.0], [1.0, 0.0]]


def test_k3_kl_term():
    logp = torch.log(torch.tensor([[0.5]]))
    ref = torch.log(torch.tensor([[0.25]]))
    loss, stats = per_token_loss(logp, logp.detach(), torch.tensor([0.0]), ref_logp=ref,
                                 beta=0.1)
    kl = 0.5 - math.log(0.5) - 1  # exp(ref - logp) - (ref - logp) - 1, ref - logp = log 0.5
    assert stats["kl"].item() == pytest.approx(kl)
    assert loss.item() == pytest.approx(0.1 * kl)


def test_aggregation_types_hand_computed():
    loss = torch.tensor([[1.0, 2.0, 3.0], [4.0, 0.0, 0.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0], [1.0, 0.0, 0.0]])
    kw = {"n_sequences": 2, "n_tokens": 4, "max_tokens": 3}
    assert aggregate(loss, mask, "grpo", **kw).item() == pytest.approx((2.0 + 4.0) / 2)
    assert aggregate(loss, mask, "dapo", **kw).item() == pytest.approx(10.0 / 4)
    assert aggregate(loss, mask, "dr_grpo", **kw).item() == pytest.approx(10.0 / 6)
    with pytest.raises(ValueError, match="grpo, dr_grpo, dapo"):
        aggregate(loss, mask, "ppo", **kw)


def test_micro_batches_add_up_to_the_batch_loss():
    torch.manual_seed(0)
    loss = torch.rand(4, 5)
    mask = (torch.rand(4, 5) > 0.3).float()
    kw = {"n_sequences": 4, "n_tokens": int(mask.sum()), "max_tokens": 5}
    for kind in ("grpo", "dapo", "dr_grpo"):
        whole = aggregate(loss, mask, kind, **kw)
        parts = aggregate(loss[:2], mask[:2], kind, **kw) + aggregate(loss[2:], mask[2:], kind,
                                                                      **kw)
        assert parts.item() == pytest.approx(whole.item())


def test_masked_tokens_get_no_gradient():
    logp = torch.zeros(1, 4, requires_grad=True)
    mask = torch.tensor([[0.0, 1.0, 0.0, 1.0]])
    loss, _ = per_token_loss(logp, logp.detach(), torch.tensor([1.0]))
    aggregate(loss, mask, "grpo", n_sequences=1, n_tokens=2, max_tokens=4).backward()
    assert logp.grad[0, 0] == 0 and logp.grad[0, 2] == 0
    assert logp.grad[0, 1] != 0 and logp.grad[0, 3] != 0


@pytest.mark.parametrize("shared_len,expected_head", [(40, 40), (44, 44), (50, 44)])
def test_shared_head_log_probs_and_gradients_match_the_plain_forward(
        tiny_chat_model, shared_len, expected_head):
    from transformers import AutoModelForCausalLM

    from gymrl.learner.grpo import shared_head, token_logprobs

    model = AutoModelForCausalLM.from_pretrained(tiny_chat_model)
    torch.manual_seed(1)
    head = torch.randint(3, 500, (shared_len,))
    ids = torch.stack([torch.cat([head, torch.randint(3, 500, (52 - shared_len,))])
                       for _ in range(3)])
    attention = torch.ones_like(ids)
    attention[2, -4:] = 0  # a right-padded row
    mask = torch.zeros_like(ids)
    mask[:, 44:] = 1
    mask[2, -4:] = 0
    assert shared_head(ids, mask) == expected_head  # never past the first policy token
    plain, plain_ent = token_logprobs(model, ids, attention, mask, 0.7, min_shared=10**9)
    plain_grad = torch.autograd.grad(plain.sum(), list(model.parameters()))
    fast, fast_ent = token_logprobs(model, ids, attention, mask, 0.7, min_shared=8)
    fast_grad = torch.autograd.grad(fast.sum(), list(model.parameters()))
    assert torch.allclose(plain, fast, atol=1e-5) and torch.allclose(plain_ent, fast_ent,
                                                                     atol=1e-4)
    for a, b in zip(plain_grad, fast_grad, strict=True):
        assert torch.allclose(a, b, atol=1e-5)
    assert plain[mask == 0].abs().max() == 0


def test_turn_advantages_credit_only_what_came_after():
    rewards = torch.tensor([1.0, 0.0])
    groups = torch.tensor([0, 0])
    # Rollout 0 earned 0.5 at each of its two turns (dense); rollout 1 earned nothing.
    advs = turn_advantages(rewards, groups, [[0.5, 0.5], [0.0]], "group", eps=0.0)
    s = math.sqrt(0.5)  # group std
    assert advs[0] == pytest.approx([0.5 / s, 0.0])  # turn 1 earned 0.5, the baseline's 0.5
    assert advs[1] == pytest.approx([-0.5 / s])


@pytest.mark.parametrize("scale", ["group", "batch", "none"])
def test_turn_advantages_without_dense_rewards_are_the_episode_advantages(scale):
    rewards = torch.tensor([1.0, 0.0, 0.3, 0.5, 2.0, 0.0])
    groups = torch.tensor([0, 0, 1, 1, 2, 2])
    episode, _ = group_advantages(rewards, groups, scale)
    advs = turn_advantages(rewards, groups, [[0.0, 0.0], [], [0.0], [0.0] * 3, [], [0.0]], scale)
    for i, row in enumerate(advs):
        assert row == pytest.approx([float(episode[i])] * len(row), abs=1e-6)


def test_turn_advantages_of_a_flat_group_are_zero_not_nan():
    advs = turn_advantages(torch.tensor([1.0, 1.0]), torch.tensor([0, 0]), [[0.5, 0.5], [1.0]])
    assert advs == [[0.0, 0.0], [0.0]]


def test_token_advantages_follow_each_tokens_turn():
    seq = Sequence()
    seq.extend([1, 2], trainable=False)
    seq.extend([3, 4], trainable=True, turn=0)
    seq.extend([5], trainable=False)
    seq.extend([6], trainable=True, turn=1)
    out = Trainer.token_advantages([seq], [[0.7, -0.2]], width=8)
    assert out[0].tolist() == pytest.approx([0, 0, 0.7, 0.7, 0, -0.2, 0, 0])
    loss, _ = per_token_loss(torch.zeros(1, 8), torch.zeros(1, 8), out)
    assert loss[0].tolist() == pytest.approx([0, 0, -0.7, -0.7, 0, 0.2, 0, 0])


def test_action_baseline_removes_each_actions_mean_advantage():
    from gymrl.learner.grpo import action_baseline

    adv = torch.tensor([1.0, 0.5, -1.0, -0.5, 2.0])
    actions = [("cheap",), ("cheap",), ("big",), ("big",), ("cheap", "big")]
    out = action_baseline(adv, actions)
    assert out.tolist() == pytest.approx([0.25, -0.25, -0.25, 0.25, 0.0])
    for key in set(actions):
        assert sum(o for o, a in zip(out.tolist(), actions, strict=True) if a == key) == \
            pytest.approx(0.0)


def test_action_baseline_leaves_flat_groups_alone():
    """Rollouts of a flat group (no signal) keep advantage 0 and do not move the means."""
    from gymrl.learner.grpo import action_baseline

    adv = torch.tensor([1.0, -1.0, 0.0, 0.0])  # group 0 informative, group 1 flat
    actions = [("cheap",), ("big",), ("big",), ("big",)]
    informative = torch.tensor([True, True, False, False])
    out = action_baseline(adv, actions, informative)
    assert out.tolist() == pytest.approx([0.0, 0.0, 0.0, 0.0])
    # Without the mask the flat group's "big" rollouts get +1/3 each: the bias it prevents.
    assert action_baseline(adv, actions).tolist() == pytest.approx([0.0, -2 / 3, 1 / 3, 1 / 3])
