"""gymrl train end to end on a tiny model: updates, checkpoints, resume (also after kill -9)."""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
import zlib
from pathlib import Path

import pytest
import torch
import yaml

from gymrl import ConfigError, Reward, Score, hookimpl
from gymrl.cli import main
from gymrl.config import load_config, to_container
from gymrl.errors import UnknownNameError
from gymrl.learner import checkpoint
from gymrl.learner.config import TrainConfig
from gymrl.learner.train import Trainer, prepare_run, sft_lr, train
from gymrl.make import make_env
from plugin_helpers import fake_plugin


def tiny_args(model: Path, out: Path, *extra: str) -> list[str]:
    return [f"model={model}", "env=router", "reward=brevity+outcome", "learner.groups=2",
            "learner.group_size=2", "rollout.max_new_tokens=8", "rollout.batch_size=8",
            "eval.episodes=2", "eval.every=0", "sft.steps=0", "learner.sft_coef=0",
            f"output_dir={out}", "progress=false", *extra]


def tiny_cfg(model: Path, out: Path, *extra: str) -> dict:
    return to_container(load_config(TrainConfig, tiny_args(model, out, *extra)))


def learner_and_sampled_logprobs(trainer: Trainer, rollouts: list) -> list[tuple]:
    """Per rollout: the learner's log-probs of its policy tokens and those it was sampled with
    (CPU tensors of the same length), to check that the two sides agree."""
    from gymrl.learner.grpo import token_logprobs

    ids, attention, mask = trainer.pad([r.seq for r in rollouts])
    with torch.no_grad():
        logp, _ = token_logprobs(trainer.model, ids, attention, mask)
    out = []
    for row, r in enumerate(rollouts):
        ours = logp[row][mask[row].bool()].float().cpu()
        out.append((ours, torch.tensor(r.logprobs[:len(ours)])))
    return out


def test_full_finetune_step_changes_every_parameter(tiny_chat_model, tmp_path):
    cfg, run_dir = prepare_run(tiny_cfg(tiny_chat_model, tmp_path, "learner.lora=false",
                                        "learner.lr=1e-2", "learner.max_grad_norm=0"))
    trainer = Trainer(cfg, run_dir)
    before = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}
    metrics = trainer.grpo_step()
    assert metrics["groups/flat"] < 2  # brevity differs between rollouts
    unchanged = [n for n, p in trainer.model.named_parameters()
                 if torch.equal(p.detach(), before[n])]
    assert unchanged == []
    for key in ("reward", "reward/brevity", "reward/outcome", "loss/policy", "entropy",
                "tokens/s", "groups/flat_fraction", "env/accuracy"):
        assert key in metrics


def test_a_step_without_signal_leaves_the_weights_alone(tiny_chat_model, tmp_path):
    """Every group flat (the tiny model never answers right: outcome 0 everywhere) and no KL:
    no update at all, even after a step with signal left momentum in AdamW."""
    cfg, run_dir = prepare_run(tiny_cfg(tiny_chat_model, tmp_path, "learner.lora=false",
                                        "learner.lr=1e-2"))
    trainer = Trainer(cfg, run_dir)
    assert trainer.grpo_step()["update/skipped"] == 0  # brevity differs: AdamW has moments
    cfg2, run_dir2 = prepare_run(tiny_cfg(tiny_chat_model, tmp_path / "flat", "reward=outcome",
                                          "learner.lora=false", "learner.lr=1e-2"))
    flat = Trainer(cfg2, run_dir2)
    flat.optimizer.load_state_dict(trainer.optimizer.state_dict())
    flat.model.load_state_dict(trainer.model.state_dict())
    before = {n: p.detach().clone() for n, p in flat.model.named_parameters()}
    metrics = flat.grpo_step()
    assert metrics["groups/flat"] == 2 and metrics["update/skipped"] == 1
    assert all(torch.equal(p.detach(), before[n]) for n, p in flat.model.named_parameters())


def test_sft_term_pulls_toward_the_demonstrations_on_flat_steps(tiny_chat_model, tmp_path):
    """learner.sft_coef: every update also lowers the demonstrations' cross-entropy, steps
    whose groups are all flat included (they update on the SFT term alone); without it the
    same steps make no update."""
    def run(coef: float, out: str) -> tuple[Trainer, list[dict]]:
        cfg, run_dir = prepare_run(tiny_cfg(
            tiny_chat_model, tmp_path / out, "reward=outcome", "learner.lora=false",
            "learner.lr=1e-2", f"learner.sft_coef={coef}", "sft.demos=4", "sft.batch_size=4"))
        trainer = Trainer(cfg, run_dir)
        return trainer, [trainer.grpo_step() for _ in range(3)]

    trainer, steps = run(1.0, "sft")
    assert [m["groups/flat"] for m in steps] == [2, 2, 2]  # no RL signal: outcome 0 everywhere
    assert [m["update/skipped"] for m in steps] == [0, 0, 0]
    losses = [m["loss/sft"] for m in steps]
    assert losses[2] < losses[1] < losses[0]  # the same 4 demonstrations each step
    assert steps[0]["loss/policy"] == 0.0  # every advantage 0: the SFT term alone
    assert len(trainer.demonstrations()) == 4
    _, plain = run(0.0, "plain")
    assert [m["update/skipped"] for m in plain] == [1, 1, 1]
    assert all("loss/sft" not in m for m in plain)


def test_sft_max_turns_draws_the_sft_term_from_the_short_demonstrations(tiny_chat_model,
                                                                         tmp_path):
    """learner.sft_max_turns=2: the SFT term sees only demonstrations of at most two policy
    turns (on the router, one call and the answer); the warm start still uses every one."""
    cfg, run_dir = prepare_run(tiny_cfg(tiny_chat_model, tmp_path, "sft.demos=16",
                                        "learner.sft_coef=1", "learner.sft_max_turns=2"))
    trainer = Trainer(cfg, run_dir)
    turns = sorted(len(s.turn_tokens()) for s in trainer.demonstrations())
    assert turns[0] == 2 and turns[-1] > 2  # the demonstrations mix 1-hop and multi-hop
    short = trainer.term_demonstrations()
    assert len(short) == turns.count(2)
    assert all(len(s.turn_tokens()) == 2 for s in short)
    trainer.cfg["learner"]["sft_max_turns"] = 1
    with pytest.raises(ConfigError, match="learner.sft_max_turns=1: no demonstration"):
        trainer.term_demonstrations()
    trainer.cfg["learner"]["sft_max_turns"] = 0
    assert len(trainer.term_demonstrations()) == 16
    # Before any SFT or evaluation: nothing else is written or spent first.
    with pytest.raises(ConfigError, match="learner.sft_max_turns=1: no demonstration"):
        train(tiny_cfg(tiny_chat_model, tmp_path / "fails", "sft.demos=4", "sft.steps=2",
                       "learner.sft_coef=1", "learner.sft_max_turns=1"))
    assert not (tmp_path / "fails" / "metrics.jsonl").exists()


def test_an_envs_training_recipe_sits_under_the_users_config(tmp_path):
    """`gymrl train env=router` takes the router's registered recipe; a key=value or a config
    file of the user's wins over it; an env without a recipe keeps the plain defaults."""
    from gymrl.learner.config import load_train_config

    cfg, recipe = load_train_config(["env=router"])
    assert recipe == ["learner.sft_coef=2.0", "learner.sft_max_turns=2", "learner.steps=6",
                      "learner.lr=4e-4"]
    assert (cfg["learner"]["sft_coef"], cfg["learner"]["sft_max_turns"]) == (2.0, 2)
    assert cfg["learner"]["steps"] == 6 and cfg["learner"]["lr"] == 4e-4
    cfg, _ = load_train_config(["env=router", "learner.sft_coef=0", "learner.steps=2"])
    assert (cfg["learner"]["sft_coef"], cfg["learner"]["sft_max_turns"]) == (0.0, 2)
    assert cfg["learner"]["steps"] == 2
    (tmp_path / "mine.yaml").write_text("learner:\n  sft_max_turns: 3\n")
    cfg, _ = load_train_config(["env=router", f"config={tmp_path / 'mine.yaml'}"])
    assert (cfg["learner"]["sft_coef"], cfg["learner"]["sft_max_turns"]) == (2.0, 3)
    cfg, recipe = load_train_config(["env=inquiry"])
    assert recipe == [] and cfg["learner"]["sft_coef"] == 0.0 and cfg["learner"]["steps"] == 4
    assert cfg["learner"]["lr"] == 2e-4
    with pytest.raises(UnknownNameError, match="unknown env .nope.; registered envs: .*router"):
        load_train_config(["env=nope"])


def test_sft_cosine_schedule_decays_from_the_peak_to_near_zero():
    sft = {"lr": 2e-3, "steps": 4, "schedule": "cosine"}
    rates = [sft_lr(sft, step) for step in range(4)]
    assert rates == pytest.approx([2e-3, 2e-3 * (1 + math.cos(math.pi / 4)) / 2, 1e-3,
                                   2e-3 * (1 + math.cos(3 * math.pi / 4)) / 2])
    assert rates[-1] > 0  # the last step still learns
    assert [sft_lr({**sft, "schedule": "constant"}, step) for step in range(4)] == [2e-3] * 4


def test_sft_uses_its_schedule_and_hands_grpo_its_own_rate(tiny_chat_model, tmp_path):
    trainer = Trainer(*prepare_run(tiny_cfg(tiny_chat_model, tmp_path, "sft.steps=3",
                                            "sft.demos=4", "sft.batch_size=2", "sft.lr=1e-2",
                                            "sft.schedule=cosine", "learner.lr=3e-4")))
    seen = []
    step = trainer.optimizer.step

    def record(*args, **kwargs):
        seen.append(trainer.optimizer.param_groups[0]["lr"])
        return step(*args, **kwargs)

    trainer.optimizer.step = record
    trainer.sft()
    assert seen == pytest.approx([1e-2, 7.5e-3, 2.5e-3])
    assert trainer.optimizer.param_groups[0]["lr"] == 3e-4


@pytest.mark.parametrize(("extra", "message"), [
    (["learner.sft_coef=-0.5"], "learner.sft_coef must be >= 0, got -0.5"),
    (["learner.sft_coef=0.5", "sft.demos=0"], "sft.demos and sft.batch_size >= 1, got 0"),
    (["sft.schedule=linear"], "sft.schedule 'linear'; allowed: constant, cosine"),
    (["learner.sft_max_turns=-1"], "learner.sft_max_turns must be >= 0"),
])
def test_sft_coef_out_of_range_is_a_clear_error(tmp_path, extra, message):
    with pytest.raises(ConfigError, match=message):
        prepare_run(tiny_cfg(Path("unused"), tmp_path, *extra))


def test_rollouts_without_advantage_skip_the_update_and_change_nothing(tiny_chat_model,
                                                                        tmp_path, monkeypatch):
    """A flat group's rollouts (advantage 0) do not pass through the model in the update, and
    the weights end as they would had they passed (their loss and gradient are 0)."""
    from gymrl.learner import train as train_module

    real = train_module.group_advantages

    def first_group_flat(rewards, group_ids, scale):
        advantages, flat = real(rewards, group_ids, scale)
        return advantages.masked_fill(group_ids == 0, 0.0), flat + 1

    monkeypatch.setattr(train_module, "group_advantages", first_group_flat)
    rows_seen: list[int] = []
    real_logprobs = train_module.token_logprobs

    def counting(model, ids, *args, **kwargs):
        if model.training:
            rows_seen.append(ids.shape[0])
        return real_logprobs(model, ids, *args, **kwargs)

    monkeypatch.setattr(train_module, "token_logprobs", counting)
    weights = {}
    for name in ("skip", "all"):
        if name == "all":
            monkeypatch.setattr(train_module, "training_rows",
                                lambda adv, *_: list(range(len(adv))))
        cfg, run_dir = prepare_run(tiny_cfg(tiny_chat_model, tmp_path / name,
                                            "learner.lora=false", "learner.lr=1e-2",
                                            "learner.groups=3"))
        trainer = Trainer(cfg, run_dir)
        # Plain SGD: the weights move by lr x gradient, so the comparison is of gradients.
        # (AdamW's first step is about lr x sign(gradient): a gradient near its eps flips on
        # the last bit of a sum over 4 rows or 6, which is rounding, not a flat row's doing.)
        trainer.optimizer = torch.optim.SGD(
            [p for p in trainer.model.parameters() if p.requires_grad], lr=1e-2)
        start = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}
        rows_seen.clear()
        metrics = trainer.grpo_step()
        assert metrics["update/skipped"] == 0
        weights[name] = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}
        assert any(not torch.equal(start[n], w) for n, w in weights[name].items())
        if name == "skip":
            assert sum(rows_seen) == 4  # 3 groups of 2: the first group's 2 rollouts left out
            assert metrics["tokens/trained"] < metrics["tokens/total"]
        else:
            assert sum(rows_seen) == 6
    for n, w in weights["skip"].items():
        torch.testing.assert_close(w, weights["all"][n], rtol=1e-5, atol=1e-7)


class _OddTasksDiffer(Reward):
    """A test reward that is flat on some tasks: on tasks whose id hashes odd it depends on
    the rollout's env seed (a group's two rollouts get seeds s and s * 1009 + 1, never equal
    mod 1000), on the others it is always 0; what the model writes does not matter."""

    name = "odd_tasks_differ"
    range = (-1.0, 0.0)

    def score(self, episode):
        if zlib.crc32(episode.task.id.encode()) % 2 == 0:
            return Score(total=0.0)
        return Score(total=-(episode.seed % 1000) / 1000)


@pytest.mark.parametrize("extra", [0, 1, 6])
def test_dynamic_sampling_replaces_flat_groups(tiny_chat_model, tmp_path, fresh_registry,
                                               extra):
    @hookimpl
    def register_rewards(register):
        register("odd_tasks_differ", _OddTasksDiffer)

    fresh_registry.add_plugin(*fake_plugin("oddtasks", register_rewards=register_rewards))
    cfg, run_dir = prepare_run(tiny_cfg(tiny_chat_model, tmp_path, "reward=odd_tasks_differ",
                                        "learner.groups=3", f"learner.resample_flat={extra}"))
    trainer = Trainer(cfg, run_dir)
    batch, played, flat = trainer.draw_batch()

    def flat_group(group):
        return len({r.reward for r in group}) == 1

    groups_played = [played[i:i + 2] for i in range(0, len(played), 2)]
    assert all(len({r.episode.task.id for r in g}) == 1 for g in groups_played)
    assert flat == sum(map(flat_group, groups_played)) > 0  # the seeds draw some even tasks
    batch_groups = [batch[i:i + 2] for i in range(0, len(batch), 2)]
    assert len(batch_groups) == 3
    assert [r.group for r in batch] == [0, 0, 1, 1, 2, 2]
    informative = [g for g in groups_played if not flat_group(g)]
    if extra == 0:
        assert len(groups_played) == 3 and batch_groups == groups_played  # as without it
    # the informative groups, then flat ones while short, in the order drawn
    chosen = informative[:3] + [g for g in groups_played if flat_group(g)][:3 - len(informative)]
    assert [id(r) for r in batch] == [id(r) for g in groups_played
                                      if any(g is c for c in chosen) for r in g]
    assert len(groups_played) <= 3 + extra
    if len(informative) < 3:
        assert len(groups_played) == 3 + extra  # it kept drawing until the extra ran out
    else:
        assert not any(flat_group(g) for g in batch_groups)
    if extra == 0:  # the tasks drawn before the option existed: seed * 1_000_003 + step * 3 + k
        env = make_env("router", split="train")
        for k, group in enumerate(groups_played):
            env.reset(seed=cfg["seed"] * 1_000_003 + k)
            assert group[0].episode.task.id == env.unwrapped.episode.task.id
    if extra == 6:
        assert len(informative) == 3  # the first 9 tasks of step 0 hold 3 or more odd ids
    metrics = trainer.grpo_step()
    assert 3 <= metrics["groups/drawn"] <= 3 + extra
    assert metrics["groups/flat_fraction"] == metrics["groups/flat"] / metrics["groups/drawn"]


def test_lora_trains_only_the_adapter(tiny_chat_model, tmp_path):
    cfg, run_dir = prepare_run(tiny_cfg(tiny_chat_model, tmp_path, "learner.lr=1e-2"))
    trainer = Trainer(cfg, run_dir)
    trainable = [n for n, p in trainer.model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)
    before = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}
    trainer.grpo_step()
    changed = {n for n, p in trainer.model.named_parameters()
               if not torch.equal(p.detach(), before[n])}
    assert changed and changed <= set(trainable)


@pytest.mark.parametrize("modules", ["all", "attention"])
def test_rl_modules_attention_leaves_the_mlp_adapters_where_they_were(tiny_chat_model, tmp_path,
                                                                     modules):
    cfg, run_dir = prepare_run(tiny_cfg(tiny_chat_model, tmp_path, "learner.lr=1e-2",
                                        f"learner.rl_modules={modules}"))
    trainer = Trainer(cfg, run_dir)
    before = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}
    assert trainer.grpo_step()["update/skipped"] == 0
    changed = {n for n, p in trainer.model.named_parameters()
               if not torch.equal(p.detach(), before[n])}
    mlp = {n for n in changed if any(m in n for m in ("gate_proj", "up_proj", "down_proj"))}
    assert changed - mlp  # the attention adapters moved either way
    assert bool(mlp) == (modules == "all")


def test_rl_modules_must_be_known(tmp_path):
    with pytest.raises(ConfigError, match=r"learner.rl_modules 'mlp'; allowed: all, attention"):
        prepare_run(tiny_cfg(Path("unused"), tmp_path, "learner.rl_modules=mlp"))


def test_kl_to_reference_is_logged_and_zero_at_start(tiny_chat_model, tmp_path):
    cfg, run_dir = prepare_run(tiny_cfg(tiny_chat_model, tmp_path, "learner.beta=0.1"))
    metrics = Trainer(cfg, run_dir).grpo_step()
    assert metrics["kl"] == pytest.approx(0.0, abs=1e-6)  # LoRA starts as the identity


@pytest.mark.parametrize("lora", ["true", "false"])
def test_kl_reference_is_the_policy_after_sft(tiny_chat_model, tmp_path, lora):
    """SFT moves the weights (with LoRA, the adapter): the KL reference is the model after SFT,
    so the first GRPO step starts at KL 0; a resumed run loads the same reference."""
    out = tmp_path / "run"
    summary = train(tiny_cfg(tiny_chat_model, out, "learner.beta=0.1", "learner.steps=2",
                             f"learner.lora={lora}", "sft.steps=3", "sft.demos=4",
                             "sft.batch_size=2", "sft.lr=1e-2", "checkpoint_every=1"))
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert rows[0]["sft/loss_last"] < rows[0]["sft/loss_first"]  # SFT moved the weights
    first = next(r for r in rows if r.get("step") == 1)
    assert first["kl"] == pytest.approx(0.0, abs=1e-6)
    assert summary["steps"] == 2
    saved = torch.load(out / "reference.pt", weights_only=True)
    cfg = to_container(load_config(TrainConfig, [f"resume={out}", "progress=false"]))
    cfg, run_dir = prepare_run(cfg)
    resumed = Trainer(cfg, run_dir)
    assert resumed.restore()
    resumed.set_reference(fresh=False)
    reference = (resumed.ref_state if lora == "true"
                 else dict(resumed.ref_model.named_parameters()))
    for name, value in saved.items():
        assert torch.equal(reference[name].detach(), value)
    (out / "reference.pt").unlink()
    with pytest.raises(ConfigError, match="reference.pt"):
        resumed.set_reference(fresh=False)


class _PerTurnLength(Reward):
    """A dense test reward: each policy turn earns minus its length / 100."""

    name = "per_turn_length"
    range = (-math.inf, 0.0)

    def score(self, episode):
        values = [-len(t.text) / 100 for t in episode.policy_turns]
        return Score(total=sum(values), per_turn=values)


@pytest.mark.parametrize("credit", ["episode", "reward_to_go"])
def test_dense_per_turn_rewards_reach_the_loss(tiny_chat_model, tmp_path, fresh_registry,
                                               monkeypatch, credit):
    @hookimpl
    def register_rewards(register):
        register("per_turn_length", _PerTurnLength)

    fresh_registry.add_plugin(*fake_plugin("dense", register_rewards=register_rewards))
    seen = []
    original = Trainer.token_advantages
    monkeypatch.setattr(Trainer, "token_advantages",
                        staticmethod(lambda *a: seen.append(original(*a)) or seen[-1]))
    cfg, run_dir = prepare_run(tiny_cfg(tiny_chat_model, tmp_path, "reward=per_turn_length",
                                        f"learner.credit={credit}", "rollout.max_new_tokens=6"))
    trainer = Trainer(cfg, run_dir)
    metrics = trainer.grpo_step()
    assert math.isfinite(metrics["loss/policy"])
    if credit == "episode":
        assert seen == []
    else:
        assert seen and all(torch.isfinite(a).all() for a in seen)


class _SeedNoise(Reward):
    """A test reward that differs between every two rollouts of a group (their env seeds)."""

    name = "seed_noise"
    range = (-1.0, 0.0)

    def score(self, episode):
        return Score(total=-(episode.seed % 997) / 997)


def test_dynamic_sampling_on_one_reward_component(tiny_chat_model, tmp_path, fresh_registry):
    @hookimpl
    def register_rewards(register):
        register("odd_tasks_differ", _OddTasksDiffer)
        register("seed_noise", _SeedNoise)

    fresh_registry.add_plugin(*fake_plugin("noisy", register_rewards=register_rewards))
    spec = "reward=odd_tasks_differ+seed_noise"
    flats = {}
    for flat_on in ("null", "odd_tasks_differ"):
        cfg, run_dir = prepare_run(tiny_cfg(tiny_chat_model, tmp_path / flat_on, spec,
                                            "learner.groups=3", "learner.resample_flat=3",
                                            f"learner.flat_on={flat_on}"))
        batch, played, flat = Trainer(cfg, run_dir).draw_batch()
        groups = [played[i:i + 2] for i in range(0, len(played), 2)]
        even = [len({r.episode.rewards["odd_tasks_differ"] for r in g}) == 1 for g in groups]
        flats[flat_on] = flat
        if flat_on == "null":  # every total differs (seed_noise): nothing is flat
            assert flat == 0 and len(groups) == 3
        else:  # flat: the groups whose odd_tasks_differ is all 0, whatever seed_noise says
            assert flat == sum(even) > 0
            assert all(len({r.reward for r in g}) == 2 for g in groups)
            batch_groups = [batch[i:i + 2] for i in range(0, len(batch), 2)]
            assert len(batch_groups) == 3
            if len(groups) - sum(even) >= 3:
                assert not any(len({r.episode.rewards["odd_tasks_differ"] for r in g}) == 1
                               for g in batch_groups)
    assert flats["odd_tasks_differ"] > flats["null"]


def test_dynamic_sampling_on_a_component_the_reward_lacks(tiny_chat_model, tmp_path):
    cfg, run_dir = prepare_run(tiny_cfg(tiny_chat_model, tmp_path, "learner.flat_on=accuracy"))
    with pytest.raises(ConfigError, match="learner.flat_on 'accuracy' is not a component of "
                                          "reward .*; allowed: "):
        Trainer(cfg, run_dir)


def test_dynamic_sampling_needs_groups_of_two(tmp_path):
    with pytest.raises(ConfigError, match="learner.resample_flat=2 needs learner.group_size >= 2"):
        prepare_run(tiny_cfg(Path("model"), tmp_path, "learner.resample_flat=2",
                             "learner.group_size=1"))


def test_a_checkpoint_is_on_disk_before_it_is_published(tiny_chat_model, tmp_path,
                                                       monkeypatch):
    """Every file of a checkpoint, and its folder, is fsynced before the rename that makes it
    ``step-N``, and the rename is fsynced (its parent folder) before ``latest`` names it."""
    cfg, run_dir = prepare_run(tiny_cfg(tiny_chat_model, tmp_path))
    trainer = Trainer(cfg, run_dir)
    synced: list[str] = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: synced.append(os.readlink(f"/proc/self/fd/{fd}"))
                        or real_fsync(fd))
    real_replace = os.replace
    published: list[tuple[str, list[str]]] = []
    monkeypatch.setattr(os, "replace", lambda a, b: published.append((str(b), list(synced)))
                        or real_replace(a, b))
    trainer.save()
    final = tmp_path / "checkpoints" / "step-0"
    (target, before), *_ = published
    assert target == str(final)
    tmp_dir = Path(before[-1])
    assert tmp_dir.parent == final.parent and tmp_dir.name.startswith(".step-0.")
    assert {Path(p).name for p in before} >= {"weights.pt", "optimizer.pt", "rng.pt",
                                              "reward_state.json", "trainer_state.json"}
    (latest, before_latest), *_ = published[1:]
    assert latest == str(final.parent / "latest")
    assert str(final.parent) in before_latest[len(before):]  # the rename, before ``latest``


def test_checkpoint_round_trip_is_exact(tiny_chat_model, tmp_path):
    cfg, run_dir = prepare_run(tiny_cfg(tiny_chat_model, tmp_path, "learner.lora=false"))
    trainer = Trainer(cfg, run_dir)
    trainer.grpo_step()
    trainer.reward(trainer.train_envs[0].unwrapped.episode)  # give the reward some state
    trainer.save()
    weights = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}
    optim = trainer.optimizer.state_dict()
    reward_state = trainer.reward.state_dict()
    fresh = Trainer(cfg, run_dir)
    assert fresh.restore() and fresh.step == 1
    for n, p in fresh.model.named_parameters():
        assert torch.equal(p, weights[n]), n
    restored = fresh.optimizer.state_dict()
    for key, state in optim["state"].items():
        for name, value in state.items():
            assert torch.equal(torch.as_tensor(restored["state"][key][name]),
                               torch.as_tensor(value))
    assert fresh.reward.state_dict() == reward_state


def test_train_writes_metrics_checkpoints_model_and_curves(tiny_chat_model, tmp_path):
    summary = train(tiny_cfg(tiny_chat_model, tmp_path, "learner.steps=2", "sft.steps=3",
                             "sft.demos=4", "sft.batch_size=2"))
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert rows[0]["sft/steps"] == 3 and rows[0]["sft/loss_last"] < rows[0]["sft/loss_first"]
    assert [r["step"] for r in rows if "loss/policy" in r] == [1, 2]
    assert "eval/reward" in rows[1] and "eval/reward" in rows[-1]  # start and end
    assert summary["start"]["eval/episodes"] == 2
    for name in ("config.yaml", "versions.json", "summary.json", "curves.png",
                 "model/config.json", "checkpoints/latest"):
        assert (tmp_path / name).exists(), name
    assert checkpoint.latest(tmp_path).name == "step-2"
    assert not list(tmp_path.glob(".*"))  # no half-written model or checkpoint left behind
    # Per-episode records of the start and end evaluations, and their paired comparison.
    start = [json.loads(x) for x in (tmp_path / "eval/step-00000.jsonl").read_text().splitlines()]
    end = [json.loads(x) for x in (tmp_path / "eval/step-00002.jsonl").read_text().splitlines()]
    assert len(start) == len(end) == 2
    change = summary["change"]
    assert change["episodes"] == 2
    assert change["reward_diff"] == pytest.approx(
        sum(e["reward"] for e in end) / 2 - sum(s["reward"] for s in start) / 2)


def test_resume_refuses_a_different_config(tiny_chat_model, tmp_path):
    train(tiny_cfg(tiny_chat_model, tmp_path, "learner.steps=1"))
    cfg = tiny_cfg(tiny_chat_model, tmp_path, "learner.steps=1", "learner.lr=0.5",
                   f"resume={tmp_path}")
    cfg["_explicit_overrides"] = ["learner.lr=0.5"]
    with pytest.raises(ConfigError, match="differs.*learner"):
        prepare_run(cfg)


@pytest.mark.parametrize("edit, message", [
    ("lr: fast", "learner.lr"),                 # a value of the wrong type
    ("speed: 3", "speed"),                      # a key the schema does not have
])
def test_resume_of_a_malformed_config_is_a_clear_error(tmp_path, edit, message):
    prepare_run(tiny_cfg(Path("model"), tmp_path))  # writes config.yaml, trains nothing
    path = tmp_path / "config.yaml"
    text = path.read_text()
    key = edit.split(":")[0]
    lines = [line for line in text.splitlines() if not line.strip().startswith(f"{key}:")]
    at = lines.index("learner:") + 1
    path.write_text("\n".join(lines[:at] + [f"  {edit}"] + lines[at:]) + "\n")
    cfg = tiny_cfg(Path("model"), tmp_path, f"resume={tmp_path}")
    with pytest.raises(ConfigError, match=rf"resume=.*config.yaml does not fit.*{message}"):
        prepare_run(cfg)


def test_resume_of_a_config_that_is_not_a_mapping_is_a_clear_error(tmp_path):
    prepare_run(tiny_cfg(Path("model"), tmp_path))
    (tmp_path / "config.yaml").write_text("- a list\n- not a config\n")
    with pytest.raises(ConfigError, match="config.yaml must hold a mapping at the top, not a "
                                          "list"):
        prepare_run(tiny_cfg(Path("model"), tmp_path, f"resume={tmp_path}"))
    (tmp_path / "config.yaml").write_text("learner: [unclosed\n")
    with pytest.raises(ConfigError, match="resume=.*config.yaml is not valid YAML"):
        prepare_run(tiny_cfg(Path("model"), tmp_path, f"resume={tmp_path}"))


def test_resume_reads_numbers_a_yaml_loader_leaves_as_strings(tmp_path):
    """``lr: 5e-4`` is a string to YAML 1.1; the schema makes it the float it means."""
    prepare_run(tiny_cfg(Path("model"), tmp_path))
    path = tmp_path / "config.yaml"
    text = path.read_text()
    assert "  lr: 0.0002\n" in text
    path.write_text(text.replace("  lr: 0.0002\n", "  lr: 5e-4\n"))
    saved, _ = prepare_run(tiny_cfg(Path("model"), tmp_path, f"resume={tmp_path}"))
    assert saved["learner"]["lr"] == 0.0005


def test_plot_command(tiny_chat_model, tmp_path):
    train(tiny_cfg(tiny_chat_model, tmp_path, "learner.steps=1"))
    (tmp_path / "curves.png").unlink()
    assert main(["plot", str(tmp_path)]) == 0 and (tmp_path / "curves.png").is_file()
    assert main(["plot", str(tmp_path / "nope")]) == 2


def test_kill_9_then_resume_continues_from_the_last_checkpoint(tiny_chat_model, tmp_path):
    args = tiny_args(tiny_chat_model, tmp_path, "learner.steps=6", "checkpoint_every=1",
                     "keep_checkpoints=2")
    cmd = [sys.executable, "-m", "gymrl.cli", "train", *args]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    deadline = time.time() + 300
    while time.time() < deadline:
        latest = checkpoint.latest(tmp_path)
        if latest is not None and int(latest.name.split("-")[1]) >= 2:
            break
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    killed_at = int(checkpoint.latest(tmp_path).name.split("-")[1])
    config_before = (tmp_path / "config.yaml").read_text()
    out = subprocess.run([sys.executable, "-m", "gymrl.cli", "train", f"resume={tmp_path}",
                          "progress=false"], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    assert (tmp_path / "config.yaml").read_text() == config_before
    steps = [json.loads(line)["step"] for line in
             (tmp_path / "metrics.jsonl").read_text().splitlines()
             if "loss/policy" in json.loads(line)]
    assert steps == [1, 2, 3, 4, 5, 6], (killed_at, steps)
    assert checkpoint.latest(tmp_path).name == "step-6"
    for ckpt in (tmp_path / "checkpoints").glob("step-*"):
        torch.load(ckpt / "weights.pt", weights_only=True)  # every kept checkpoint is whole


def test_resume_after_a_kill_that_cut_a_metrics_line_short(tiny_chat_model, tmp_path):
    """Killed while writing step 2's metrics (so before its checkpoint): the torn line is
    dropped and step 2 is redone as it first ran."""
    train(tiny_cfg(tiny_chat_model, tmp_path, "learner.steps=2", "checkpoint_every=1"))
    before = _trained(_rows(tmp_path))
    shutil.rmtree(tmp_path / "checkpoints" / "step-2")
    text = (tmp_path / "metrics.jsonl").read_text()
    (tmp_path / "metrics.jsonl").write_text(text[:text.rindex('{"step": 2') + 20])
    cfg = tiny_cfg(tiny_chat_model, tmp_path, f"resume={tmp_path}", "learner.steps=2",
                   "checkpoint_every=1")
    cfg["_explicit_overrides"] = []
    assert train(cfg)["steps"] == 2
    assert _trained(_rows(tmp_path)) == before


@pytest.mark.slow
def test_gymrl_train_on_the_embedded_model(tmp_path):
    """The main job's real path, shortened: SFT, one GRPO step, evaluation, checkpoint, PNG."""
    out = subprocess.run(
        [sys.executable, "-m", "gymrl.cli", "train", "env=router", "reward=cost+outcome",
         "learner.steps=1", "learner.groups=1", "learner.group_size=4", "sft.steps=2",
         "sft.demos=8", "sft.batch_size=4", "eval.episodes=4", "rollout.max_new_tokens=32",
         f"output_dir={tmp_path}", "progress=false"],
        capture_output=True, text=True, timeout=1800)
    assert out.returncode == 0, out.stderr[-3000:]
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert rows[0]["sft/steps"] == 2 and rows[-1]["step"] == 1
    assert (tmp_path / "curves.png").is_file() and checkpoint.latest(tmp_path).name == "step-1"
    # The router's training recipe: printed, saved with the run, and its SFT term applied.
    from gymrl.learner.config import env_recipe

    recipe = env_recipe("router")
    assert f"training recipe: {' '.join(recipe)}" in out.stderr
    saved = yaml.safe_load((tmp_path / "config.yaml").read_text())["learner"]
    for key, value in (item.removeprefix("learner.").split("=") for item in recipe):
        if key != "steps":  # the command's learner.steps=1 wins over the recipe's
            assert float(saved[key]) == float(value), key
    assert saved["steps"] == 1 and saved["sft_coef"] > 0
    assert rows[-1]["loss/sft"] > 0


def test_train_on_the_tools_env_with_its_own_demonstrations(tiny_chat_model, tmp_path):
    """SFT imitates the env's demo_policy (the tools env's oracle), then GRPO runs."""
    cfg = tiny_cfg(tiny_chat_model, tmp_path, "env=tools", "env.families=function_calling",
                   "reward=tool_format+tool_correctness", "sft.steps=2", "sft.demos=4",
                   "sft.batch_size=2", "learner.steps=1")
    summary = train(cfg)
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert rows[0]["sft/demos"] == 4 and summary["steps"] == 1
    assert "reward/tool_correctness" in rows[-1]


def test_resume_of_a_run_written_before_a_config_key_existed(tiny_chat_model, tmp_path):
    train(tiny_cfg(tiny_chat_model, tmp_path, "learner.steps=1"))
    text = (tmp_path / "config.yaml").read_text()
    old = "\n".join(line for line in text.splitlines() if "credit:" not in line)
    (tmp_path / "config.yaml").write_text(old + "\n")  # as an older gymrl wrote it
    cfg = tiny_cfg(tiny_chat_model, tmp_path, f"resume={tmp_path}", "learner.steps=1")
    cfg["_explicit_overrides"] = []
    summary = train(cfg)
    assert summary["steps"] == 1


def test_train_on_the_inquiry_env_with_dense_information_gain(tiny_chat_model, tmp_path):
    """`gymrl train env=inquiry reward=info_gain+outcome`: SFT from the oracle's dialogues,
    then GRPO with the per-turn information gain credited turn by turn (reward_to_go)."""
    cfg = tiny_cfg(tiny_chat_model, tmp_path, "env=inquiry", "env.max_turns=3",
                   "reward=info_gain+outcome", "sft.steps=2", "sft.demos=4",
                   "sft.batch_size=2", "learner.steps=1", "rollout.max_new_tokens=16")
    summary = train(cfg)
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert rows[0]["sft/demos"] == 4 and summary["steps"] == 1
    assert {"reward/info_gain", "reward/outcome"} <= set(rows[-1])


def _rows(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def _trained(rows: list[dict]) -> list[tuple]:
    """What a step's rollouts earned and its update measured (times left out)."""
    return [(r["step"], r["reward"], r["loss/policy"], r.get("eval/reward")) for r in rows
            if "loss/policy" in r]


def test_a_fork_trains_as_a_fresh_run_with_its_config_would(tiny_chat_model, tmp_path):
    """fork=SRC: the same SFT'd start, then this command's learner: identical to a fresh run."""
    sft = ("sft.steps=2", "sft.demos=4", "sft.batch_size=2")
    source, fork, fresh = tmp_path / "source", tmp_path / "fork", tmp_path / "fresh"
    train(tiny_cfg(tiny_chat_model, source, "learner.steps=1", *sft))
    # On the command line: the source's own env and reward may be repeated, not changed.
    argv = [a for a in tiny_args(tiny_chat_model, fork, "learner.steps=2", "learner.lr=5e-3")
            if not a.startswith(("model=", "sft."))]
    assert main(["train", f"fork={source}", *argv]) == 0
    train(tiny_cfg(tiny_chat_model, fresh, "learner.steps=2", "learner.lr=5e-3", *sft))
    forked, again = _rows(fork), _rows(fresh)
    assert _trained(forked) == _trained(again) and len(_trained(forked)) == 2
    starts = [[r for r in rows if r["step"] == 0 and "eval/reward" in r]
              for rows in (_rows(source), forked)]
    assert starts[0] == starts[1]  # the start evaluation is the source's, copied
    assert (fork / "eval" / "step-00000.jsonl").read_bytes() == \
        (source / "eval" / "step-00000.jsonl").read_bytes()
    saved = yaml.safe_load((fork / "config.yaml").read_text())
    assert saved["fork"] == str(source) and saved["learner"]["lr"] == 5e-3
    assert saved["sft"]["steps"] == 2 and saved["model"] == str(tiny_chat_model)
    assert json.loads((fork / "versions.json").read_text())["gymrl"]
    a = torch.load(fork / "checkpoints" / "step-2" / "weights.pt", weights_only=True)
    b = torch.load(fresh / "checkpoints" / "step-2" / "weights.pt", weights_only=True)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_a_fused_optimizer_is_kept_through_a_fork_and_a_resume(tiny_chat_model, tmp_path):
    """learner.optim is the run's own: restoring a checkpoint written by the other
    implementation (the fork's source) must not put the saved flag back."""
    source, fork = tmp_path / "source", tmp_path / "fork"
    train(tiny_cfg(tiny_chat_model, source, "learner.steps=0"))
    train(tiny_cfg(tiny_chat_model, fork, f"fork={source}", "learner.steps=1",
                   "learner.optim=adamw_torch_fused"))
    for run, fused in ((source, False), (fork, True)):
        cfg, run_dir = prepare_run(tiny_cfg(tiny_chat_model, tmp_path / "x", f"resume={run}"))
        trainer = Trainer(cfg, run_dir)
        assert trainer.restore() and trainer.step == (1 if fused else 0)
        assert all(bool(g["fused"]) is fused for g in trainer.optimizer.param_groups)
        if fused:  # its moments were restored too: it took a step
            assert trainer.optimizer.state


def test_an_unknown_optimizer_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="learner.optim 'sgd'; allowed: adamw_torch, "
                                          "adamw_torch_fused"):
        prepare_run(tiny_cfg(Path("model"), tmp_path, "learner.optim=sgd"))


def test_a_fork_with_its_own_rollout_seed_samples_other_rollouts_of_the_same_tasks(
        tiny_chat_model, tmp_path):
    """rollout.seed: the same start and tasks, another sampling stream (run-to-run noise),
    as a fresh run with that rollout.seed samples."""
    source = tmp_path / "source"
    train(tiny_cfg(tiny_chat_model, source, "learner.steps=0"))
    runs = {"same": (f"fork={source}",), "other": (f"fork={source}", "rollout.seed=7"),
            "fresh": ("rollout.seed=7",)}
    for name, extra in runs.items():
        train(tiny_cfg(tiny_chat_model, tmp_path / name, "learner.steps=2", *extra))
    same, other, fresh = (_trained(_rows(tmp_path / name)) for name in runs)
    assert other == fresh and len(other) == 2
    assert [r[1] for r in other] != [r[1] for r in same]  # what the rollouts earned
    saved = yaml.safe_load((tmp_path / "other" / "config.yaml").read_text())
    assert saved["rollout"]["seed"] == 7 and saved["seed"] == 0


def test_a_fork_that_evaluates_differently_evaluates_its_start(tiny_chat_model, tmp_path):
    source = tmp_path / "source"
    train(tiny_cfg(tiny_chat_model, source, "learner.steps=0"))
    summary = train(tiny_cfg(tiny_chat_model, tmp_path / "fork", f"fork={source}",
                             "learner.steps=1", "eval.episodes=3"))
    assert summary["start"]["step"] == 0 and summary["start"]["eval/episodes"] == 3
    assert summary["end"]["eval/episodes"] == 3 and "change" in summary
    assert len((tmp_path / "fork" / "eval" / "step-00000.jsonl").read_text().splitlines()) == 3


def test_evaluating_changes_no_training_draw(tiny_chat_model, tmp_path):
    """How often and on how many tasks a run evaluates leaves its rollouts and weights alone,
    so a benchmark with 200-task evaluations trains exactly as the main job with 24 does."""
    runs = {"rare": ("eval.episodes=2", "eval.every=0"),
            "often": ("eval.episodes=3", "eval.every=1")}
    for name, extra in runs.items():
        train(tiny_cfg(tiny_chat_model, tmp_path / name, "learner.steps=3", "learner.lr=5e-3",
                       *extra))
    rare, often = ([(r["step"], r["reward"], r["loss/policy"]) for r in _rows(tmp_path / name)
                    if "loss/policy" in r] for name in runs)
    assert rare == often and len(rare) == 3
    assert sum("eval/reward" in r for r in _rows(tmp_path / "often")) == 4
    a, b = (torch.load(tmp_path / name / "checkpoints" / "step-3" / "weights.pt",
                       weights_only=True) for name in runs)
    assert all(torch.equal(a[k], b[k]) for k in a)


class StreamEngine:
    """A separate rollout engine's sampling stream, as vLLM's call count: what a checkpoint
    must carry so that a resumed run samples what the uninterrupted one would have."""

    def __init__(self, calls: int = 0) -> None:
        self.calls = calls

    def sampling_state(self) -> int:
        return self.calls

    def set_sampling_state(self, state: int) -> None:
        self.calls = state

    def load_weights(self, model) -> None:
        pass


def test_a_checkpoint_carries_the_rollout_engines_sampling_stream(tiny_chat_model, tmp_path):
    cfg, run_dir = prepare_run(tiny_cfg(tiny_chat_model, tmp_path))
    trainer = Trainer(cfg, run_dir)
    trainer.backend = StreamEngine(calls=0)
    trainer.save()  # step 0: a fork starts its own stream afresh, as a new run does
    trainer.step, trainer.backend.calls = 3, 17
    trainer.save()
    resumed = Trainer(cfg, run_dir)
    resumed.backend = StreamEngine(calls=0)
    assert resumed.restore() and resumed.step == 3
    assert resumed.backend.calls == 17
    (run_dir / "checkpoints" / "latest").write_text("step-0\n")
    fresh = Trainer(cfg, run_dir)
    fresh.backend = StreamEngine(calls=5)
    assert fresh.restore() and fresh.step == 0
    assert fresh.backend.calls == 5  # left as the new run seeded it


def test_step_0_outlives_checkpoint_pruning_and_a_killed_fork_is_made_again(
        tiny_chat_model, tmp_path):
    source = tmp_path / "source"
    train(tiny_cfg(tiny_chat_model, source, "learner.steps=3", "checkpoint_every=1",
                   "keep_checkpoints=1"))
    assert sorted(p.name for p in (source / "checkpoints").glob("step-*")) == \
        ["step-0", "step-3"]
    fork = tmp_path / "fork"
    (fork / "checkpoints" / ".fork.tmp").mkdir(parents=True)  # a fork stopped mid-copy
    summary = train(tiny_cfg(tiny_chat_model, fork, f"fork={source}", "learner.steps=1"))
    assert summary["steps"] == 1 and not (fork / "checkpoints" / ".fork.tmp").exists()


@pytest.mark.parametrize(("extra", "message"), [
    (["seed=3"], r"\['seed'\] made the policy the fork starts from"),
    (["sft.steps=5", "learner.lora_r=4", "env=router"], r"\['learner.lora_r', 'sft.steps'\]"),
])
def test_a_fork_refuses_to_change_its_start(tiny_chat_model, tmp_path, extra, message):
    source = tmp_path / "source"
    train(tiny_cfg(tiny_chat_model, source, "learner.steps=0"))
    cfg = tiny_cfg(tiny_chat_model, tmp_path / "fork", f"fork={source}", *extra)
    cfg["_explicit_overrides"] = [f"fork={source}", *extra]
    with pytest.raises(ConfigError, match=message):
        prepare_run(cfg)


def test_a_fork_with_the_sft_term_needs_its_source_to_have_demonstrations(tiny_chat_model,
                                                                          tmp_path):
    source = tmp_path / "source"
    train(tiny_cfg(tiny_chat_model, source, "learner.steps=0", "sft.demos=0"))
    with pytest.raises(ConfigError, match="learner.sft_coef=0.5 needs demonstrations"):
        prepare_run(tiny_cfg(tiny_chat_model, tmp_path / "fork", f"fork={source}",
                             "learner.sft_coef=0.5"))


def test_a_fork_needs_a_run_with_a_start_and_a_new_folder(tiny_chat_model, tmp_path):
    with pytest.raises(ConfigError, match="no config.yaml and checkpoints/step-0 there"):
        prepare_run(tiny_cfg(tiny_chat_model, tmp_path / "fork", f"fork={tmp_path}"))
    source = tmp_path / "source"
    train(tiny_cfg(tiny_chat_model, source, "learner.steps=0"))
    with pytest.raises(ConfigError, match="already holds a run; name a new folder .or resume="):
        prepare_run(tiny_cfg(tiny_chat_model, source, f"fork={source}"))
