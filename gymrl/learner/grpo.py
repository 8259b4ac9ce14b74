"""GRPO, top to bottom: group-relative advantages, the clipped surrogate, loss aggregation.

Notation: B sequences, T token positions, ``mask`` 1 on policy tokens. All functions work on
plain tensors so the tests can check them against hand-computed values.
"""

from __future__ import annotations

from typing import Any

SCALES = ("group", "batch", "none")
LOSS_TYPES = ("grpo", "dr_grpo", "dapo")


def group_advantages(rewards: Any, groups: Any, scale: str = "group",
                     eps: float = 1e-4) -> tuple[Any, int]:
    """Each reward minus its group's mean, optionally divided by a standard deviation.

    Args:
        rewards: (B,) episode rewards.
        groups: (B,) integer group ids (rollouts of the same task share one).
        scale: ``group`` divides by the group's std, ``batch`` by the batch's std, ``none``
            leaves the centred rewards (Dr. GRPO).
        eps: added to the std, so equal rewards give 0, never NaN.

    Returns:
        (advantages (B,), number of groups whose rewards were all equal: they carry no signal).
    """
    import torch

    if scale not in SCALES:
        raise ValueError(f"scale_rewards {scale!r}; allowed: {', '.join(SCALES)}")
    rewards = rewards.double()
    adv = torch.zeros_like(rewards)
    stds = torch.zeros_like(rewards)
    flat = 0
    for g in torch.unique(groups):
        idx = groups == g
        r = rewards[idx]
        adv[idx] = r - r.mean()
        std = r.std(unbiased=True) if r.numel() > 1 else torch.zeros((), dtype=r.dtype)
        stds[idx] = std
        flat += int(torch.all(r == r[0]))
    if scale == "group":
        adv = adv / (stds + eps)
    elif scale == "batch":
        adv = adv / ((rewards.std(unbiased=True) if rewards.numel() > 1 else 0.0) + eps)
    return adv.float(), flat


def action_baseline(advantages: Any, actions: list[Any], informative: Any = None) -> Any:
    """Each advantage minus the batch mean of the advantages of rollouts that took its action.

    ``actions[i]`` is a hashable summary of what rollout i did (the tools or experts it called).
    The group baseline compares rollouts of one task; across tasks, an action that often wins
    (the cheapest expert, when luck favours it) is pushed up everywhere at once. Subtracting
    the action's mean advantage over the batch removes that shared push and keeps what depends
    on the task (which action is better *here*). An action taken once gets 0.

    ``informative`` (B,) bool marks the rollouts of groups whose rewards differ; the others
    keep their advantage (0 for a flat group) and do not count in the means. A flat group
    says nothing about its actions: shifting it by the mean of the action elsewhere would push
    every action that is bad on average *up* in every group where nothing was learned
    (measured on the router: all calls moved to the most expensive expert).
    """
    import torch

    out = advantages.clone()
    if informative is None:
        informative = torch.ones(len(actions), dtype=torch.bool)
    for key in set(actions):
        idx = torch.tensor([a == key for a in actions]) & informative
        if bool(idx.any()):
            out[idx] = advantages[idx] - advantages[idx].mean()
    return out


def turn_advantages(rewards: Any, groups: Any, per_turn: list[list[float]],
                    scale: str = "group", eps: float = 1e-4) -> list[list[float]]:
    """Reward-to-go advantages: each policy turn is credited only with what came after it.

    For rollout i with episode reward ``R_i`` and dense per-turn rewards ``r_i0, r_i1, ...``
    (part of ``R_i``), turn t's return is ``G_it = R_i - sum_{k<t} r_ik`` (what was earned from
    turn t on) and its advantage ``(G_it - mean_g R) / std`` with the same baseline and scale as
    :func:`group_advantages`. Turn 0's advantage is the episode's; without dense rewards every
    turn gets the episode's advantage (plain GRPO). A group whose episode rewards are all
    equal gets zeros, as in :func:`group_advantages`.

    Args:
        rewards: (B,) episode rewards.
        groups: (B,) group ids.
        per_turn: for each rollout, its dense reward per policy turn (may be empty).
        scale, eps: as in :func:`group_advantages`.

    Returns:
        For each rollout, one advantage per policy turn (at least one entry).
    """
    if scale not in SCALES:
        raise ValueError(f"scale_rewards {scale!r}; allowed: {', '.join(SCALES)}")
    rewards = rewards.double()
    out = []
    for i, dense in enumerate(per_turn):
        group = rewards[groups == groups[i]]
        if bool((group == group[0]).all()):  # a flat group carries no signal, dense or not
            out.append([0.0] * max(len(dense), 1))
            continue
        centred = float(rewards[i] - group.mean())
        divisor = _divisor(rewards, groups, i, scale, eps)
        advs, earned_before = [], 0.0
        for t in range(max(len(dense), 1)):
            advs.append((centred - earned_before) / divisor)
            earned_before += float(dense[t]) if t < len(dense) else 0.0
        out.append(advs)
    return out


def _divisor(rewards: Any, groups: Any, i: int, scale: str, eps: float) -> float:
    """What rollout i's centred reward is divided by under ``scale``."""
    if scale == "group":
        r = rewards[groups == groups[i]]
        return float(r.std(unbiased=True) if r.numel() > 1 else 0.0) + eps
    if scale == "batch":
        return float(rewards.std(unbiased=True) if rewards.numel() > 1 else 0.0) + eps
    return 1.0


def per_token_loss(logp: Any, old_logp: Any, advantages: Any, *, epsilon: float = 0.2,
                   epsilon_high: float | None = None, ref_logp: Any = None,
                   beta: float = 0.0) -> tuple[Any, dict[str, Any]]:
    """The clipped surrogate (and optional k3 KL to a reference) at every token.

    ``loss = -min(ratio * A, clip(ratio, 1 - eps, 1 + eps_high) * A) + beta * KL`` with
    ``ratio = exp(logp - old_logp)`` and ``KL = exp(ref - logp) - (ref - logp) - 1``.

    ``advantages`` is (B,), one per sequence, or (B, T), one per token (reward-to-go credit).

    Returns:
        (loss (B, T), {"ratio", "clipped", "kl"} tensors of shape (B, T) for metrics).
    """
    import torch

    high = epsilon if epsilon_high is None else epsilon_high
    ratio = torch.exp(logp - old_logp)
    adv = advantages.unsqueeze(-1) if advantages.dim() == 1 else advantages
    unclipped = ratio * adv
    clipped = torch.clamp(ratio, 1 - epsilon, 1 + high) * adv
    loss = -torch.minimum(unclipped, clipped)
    stats: dict[str, Any] = {"ratio": ratio.detach(),
                             "clipped": (clipped < unclipped).detach().float()}
    if beta and ref_logp is not None:
        delta = ref_logp - logp
        kl = torch.exp(delta) - delta - 1
        loss = loss + beta * kl
        stats["kl"] = kl.detach()
    return loss, stats


def aggregate(loss: Any, mask: Any, loss_type: str, *, n_sequences: int, n_tokens: int,
              max_tokens: int) -> Any:
    """Sum this micro-batch's share of the batch loss, so micro-batches add up exactly.

    - ``grpo``: each sequence's mean over its tokens, averaged over the ``n_sequences`` of the
      batch (long and short answers weigh the same).
    - ``dapo``: the mean over all ``n_tokens`` policy tokens of the batch (token-level).
    - ``dr_grpo``: the sum over tokens divided by ``n_sequences * max_tokens``, a constant, so
      length does not bias the gradient.
    """
    if loss_type not in LOSS_TYPES:
        raise ValueError(f"loss_type {loss_type!r}; allowed: {', '.join(LOSS_TYPES)}")
    masked = loss * mask
    if loss_type == "grpo":
        per_seq = masked.sum(-1) / mask.sum(-1).clamp(min=1)
        return per_seq.sum() / n_sequences
    if loss_type == "dapo":
        return masked.sum() / max(n_tokens, 1)
    return masked.sum() / (n_sequences * max_tokens)


def shared_head(ids: Any, mask: Any) -> int:
    """Columns every row shares before any policy token (right-padded rows)."""
    import torch

    same = (ids == ids[:1]).all(dim=0)
    first_policy = int(mask.argmax(dim=1).min()) if bool(mask.any()) else ids.shape[1] - 1
    limit = min(first_policy, ids.shape[1] - 1)
    differs = torch.nonzero(~same[:limit])
    return int(differs[0]) if len(differs) else limit


def token_logprobs(model: Any, ids: Any, attention: Any, mask: Any, temperature: float = 1.0,
                   min_shared: int = 32) -> tuple[Any, Any]:
    """Log-prob and entropy of each policy token given the tokens before it.

    Only positions where ``mask`` is 1 are scored (the vocabulary projection and softmax are
    the memory peak, so env tokens skip them); other positions are 0. Logits are divided by
    the sampling temperature, so ratios compare like with like. When the rows share a head of
    at least ``min_shared`` tokens (the system prompt; a group's whole prompt), it is run once:
    for the model types ``cascade`` supports, in one pass with every row's real tokens (no
    padding; see :mod:`gymrl.learner.cascade`), else by copying its KV cache to every row
    (gradients flow back through the copies).

    Returns:
        (log-probs (B, T), entropies (B, T)); position 0 is never a policy token.
    """
    import torch

    from gymrl.learner import cascade

    lm = model.get_base_model() if hasattr(model, "get_base_model") else model
    rows = ids.shape[0]
    head = shared_head(ids, mask) if rows > 1 else 0
    offset = head
    if head >= min_shared and cascade.supports(lm, ids, attention):
        picked = cascade.policy_states(lm, ids, attention, mask, head)
    elif head >= min_shared:
        from transformers import DynamicCache

        cache = DynamicCache(config=lm.config)
        # One embedding lookup for both passes: its backward writes a vocabulary-sized
        # gradient (113 MB for SmolLM2) however few tokens it saw, once instead of twice.
        embeds = lm.get_input_embeddings()(ids)
        first = lm.model(inputs_embeds=embeds[:1, :head], cache=cache, use_cache=True)
        cache.batch_repeat_interleave(rows)
        rest = lm.model(inputs_embeds=embeds[:, head:], attention_mask=attention, cache=cache,
                        use_cache=True).last_hidden_state
        # Position t predicts token t + 1: the head's last state predicts the first rest token.
        last = first.last_hidden_state[:, -1:]
        states = torch.cat([last.expand(rows, 1, last.shape[-1]), rest[:, :-1]], dim=1)
        picked = states[mask[:, head:].bool()]
    else:
        offset = 1
        states = lm.model(input_ids=ids, attention_mask=attention).last_hidden_state[:, :-1]
        picked = states[mask[:, 1:].bool()]
    where = mask[:, offset:].bool()
    targets = ids[:, offset:]
    # The vocabulary projection only where a policy token is predicted: it is the memory peak.
    picked = lm.lm_head(picked).float()
    if temperature and temperature != 1.0:
        picked = picked / temperature
    logp_all = torch.log_softmax(picked, dim=-1)
    chosen = logp_all.gather(-1, targets[where].unsqueeze(-1)).squeeze(-1)
    with torch.no_grad():  # a metric: no graph keeping two vocabulary-wide tensors alive
        entropy = -(logp_all.exp() * logp_all).sum(-1)
    logp = torch.zeros(ids.shape, dtype=chosen.dtype, device=ids.device)
    ent = torch.zeros(ids.shape, dtype=chosen.dtype, device=ids.device)
    logp[:, offset:][where] = chosen
    ent[:, offset:][where] = entropy
    return logp, ent
