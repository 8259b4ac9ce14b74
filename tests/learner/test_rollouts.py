"""Token sequences and multi-turn rollouts: exact ids, env tokens masked, groups share a task."""

from __future__ import annotations

from gymrl.backends.hf import HFBackend
from gymrl.learner.rollout import reset_group, run_rollouts
from gymrl.learner.sequences import demonstration, env_suffix, render
from gymrl.make import make_env


def test_env_suffix_is_the_template_between_turns(tiny_chat_model):
    backend = HFBackend(str(tiny_chat_model), temperature=0)
    tok = backend.tokenizer
    messages = [{"role": "system", "content": "S"}, {"role": "user", "content": "Q"},
                {"role": "assistant", "content": "<answer>A</answer>"},
                {"role": "user", "content": "<information>I</information>"}]
    suffix = env_suffix(tok, messages, ended_with_eos=False)
    assert suffix == "<|im_end|>\n<|im_start|>user\n<information>I</information><|im_end|>\n" \
                     "<|im_start|>assistant\n"
    assert env_suffix(tok, messages, ended_with_eos=True) == suffix[len("<|im_end|>"):]
    full = render(tok, messages, generation_prompt=True)
    assert full.endswith(suffix)


def test_demonstration_masks_exactly_the_assistant_text(tiny_chat_model):
    tok = HFBackend(str(tiny_chat_model), temperature=0).tokenizer
    messages = [{"role": "system", "content": "S"}, {"role": "user", "content": "Q"},
                {"role": "assistant", "content": "<think>t</think><search>m: q</search>"},
                {"role": "user", "content": "<information>I</information>"},
                {"role": "assistant", "content": "<think>t</think><answer>A</answer>"}]
    seq = demonstration(tok, messages)
    policy = tok.decode([i for i, m in zip(seq.ids, seq.mask, strict=True) if m])
    env = tok.decode([i for i, m in zip(seq.ids, seq.mask, strict=True) if not m])
    assert policy == messages[2]["content"] + messages[4]["content"]
    assert "<information>I</information>" in env and "<answer>" not in env
    assert tok.decode(seq.ids) == render(tok, messages, generation_prompt=False).removesuffix(
        "<|im_end|>\n")
    assert [tok.decode(t) for t in seq.turn_tokens()] == [messages[2]["content"],
                                                           messages[4]["content"]]


def test_rollouts_record_exact_policy_tokens_and_mask_env_tokens(tiny_chat_model):
    backend = HFBackend(str(tiny_chat_model), temperature=1.0, max_new_tokens=12, seed=3)
    envs = [make_env("router", reward="brevity+outcome") for _ in range(6)]
    rollouts = reset_group(envs[:3], task_seed=5, group=0) + reset_group(envs[3:], 6, 1)
    run_rollouts(backend, rollouts)
    for r in rollouts:
        assert r.done and r.episode is not None
        policy_ids = [t for turn in r.episode.policy_turns for t in turn.token_ids]
        assert [i for i, m in zip(r.seq.ids, r.seq.mask, strict=True) if m] == policy_ids
        # Each policy token knows its turn; env tokens have none.
        assert [t for t in r.seq.turn if t >= 0] == [
            k for k, turn in enumerate(r.episode.policy_turns) for _ in turn.token_ids]
        assert [int(t >= 0) for t in r.seq.turn] == r.seq.mask
        assert len(r.logprobs) == len(policy_ids)
        observations = [t.text for t in r.episode.turns[1:] if t.role == "env"]
        if r.episode.truncated:  # the last observation came after the last turn: not trained on
            observations = observations[:-1]
        env_text = backend.tokenizer.decode(
            [i for i, m in zip(r.seq.ids, r.seq.mask, strict=True) if not m])
        # (An observation quoting the policy's broken bytes may not survive a decode round trip.)
        assert all(obs in env_text for obs in observations if "\ufffd" not in obs)
        assert env_text.count("<|im_start|>user") == len(observations) + 1
    for group in (rollouts[:3], rollouts[3:]):
        assert len({r.episode.task.id for r in group}) == 1
        assert len({r.episode.seed for r in group}) == 3


def test_a_group_with_the_same_env_seed_draws_the_same_luck():
    """same_seed: every env of a group holds the same task and RNG state, so the same action
    gets the same expert reply in every rollout; by default each rollout has its own luck."""
    replies = {}
    for same in (True, False):
        envs = [make_env("router") for _ in range(8)]
        rollouts = reset_group(envs, task_seed=11, group=0, same_seed=same)
        assert len({r.env.unwrapped.episode.task.id for r in rollouts}) == 1
        question = rollouts[0].env.unwrapped.episode.task.prompt
        states = {str(env.unwrapped.np_random.bit_generator.state) for env in envs}
        assert (len(states) == 1) == same
        replies[same] = set()
        for env in envs:  # a weak expert: its answer is often wrong, so luck shows
            obs, *_ = env.step(f"<think>t</think>\n<search>pico-math: {question}</search>")
            replies[same].add(obs)
    assert len(replies[True]) == 1
    assert len(replies[False]) > 1
