"""``gymrl train``: SFT warm start (optional), then multi-turn GRPO, read top to bottom.

Each step: G rollouts for each of ``groups`` training tasks, scored by the env's reward;
group-relative advantages; ``mu`` passes of the clipped surrogate over the policy tokens (env
tokens are masked), in micro-batches; metrics to ``metrics.jsonl``; held-out evaluation and
atomic checkpoints every few steps; a PNG of the curves at the end.
"""

from __future__ import annotations

import json
import math
import os
import random
import shutil
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from gymrl.backends.base import sampling_stream_kept
from gymrl.errors import ConfigError
from gymrl.learner import checkpoint
from gymrl.learner.grpo import (
    LOSS_TYPES,
    SCALES,
    action_baseline,
    aggregate,
    group_advantages,
    per_token_loss,
    token_logprobs,
    turn_advantages,
)
from gymrl.learner.memory import keep_freed_memory
from gymrl.learner.rollout import Rollout, reset_group, run_rollouts
from gymrl.learner.sequences import Sequence, demonstration
from gymrl.results import atomic_write_json, atomic_write_text, fsync_path, new_run_dir, versions

CREDITS = ("episode", "reward_to_go")
# What a fork takes from the run it starts from: what made its step-0 policy.
FORK_FIXED = ("model", "env", "reward", "sft", "seed")
FORK_FIXED_LEARNER = ("lora", "lora_r", "lora_alpha", "lora_dropout", "dtype")
ROLLOUT_BACKENDS = ("hf", "vllm")
HF_ROLLOUT_DTYPES = ("bfloat16", "float16", "float32")
RL_MODULES = ("all", "attention")
OPTIMS = ("adamw_torch", "adamw_torch_fused")
MLP_MODULES = ("gate_proj", "up_proj", "down_proj")
SFT_SCHEDULES = ("constant", "cosine")


def prepare_run(cfg: dict[str, Any]) -> tuple[dict[str, Any], Path]:
    """The run folder and config: a new one, or the one being resumed (which must match)."""
    from omegaconf import OmegaConf

    learner = cfg["learner"]
    if learner["scale_rewards"] not in SCALES:
        raise ConfigError(f"learner.scale_rewards {learner['scale_rewards']!r}; allowed: "
                          f"{', '.join(SCALES)}")
    if learner["loss_type"] not in LOSS_TYPES:
        raise ConfigError(f"learner.loss_type {learner['loss_type']!r}; allowed: "
                          f"{', '.join(LOSS_TYPES)}")
    if cfg["rollout"]["backend"] not in ROLLOUT_BACKENDS:
        raise ConfigError(f"rollout.backend {cfg['rollout']['backend']!r}; allowed: "
                          f"{', '.join(ROLLOUT_BACKENDS)}")
    hf_dtype = cfg["rollout"].get("hf_dtype")
    if hf_dtype is not None and hf_dtype not in HF_ROLLOUT_DTYPES:
        raise ConfigError(f"rollout.hf_dtype {hf_dtype!r}; allowed: null (the learner's own "
                          f"model), {', '.join(HF_ROLLOUT_DTYPES)}")
    if cfg["rollout"].get("hf_pack") and cfg["learner"]["device"] != "cpu":
        raise ConfigError(f"rollout.hf_pack=true is for the CPU (oneDNN); learner.device is "
                          f"{cfg['learner']['device']!r}")
    if cfg["rollout"].get("hf_pack") and cfg["rollout"]["backend"] != "hf":
        raise ConfigError(f"rollout.hf_pack=true is for rollout.backend=hf; the "
                          f"{cfg['rollout']['backend']} engine has kernels of its own")
    if hf_dtype is not None and cfg["rollout"]["backend"] != "hf":
        raise ConfigError(f"rollout.hf_dtype={hf_dtype} is for rollout.backend=hf; the "
                          f"{cfg['rollout']['backend']} engine's weights are rollout.dtype")
    if learner["rl_modules"] not in RL_MODULES:
        raise ConfigError(f"learner.rl_modules {learner['rl_modules']!r}; allowed: "
                          f"{', '.join(RL_MODULES)}")
    if learner["optim"] not in OPTIMS:
        raise ConfigError(f"learner.optim {learner['optim']!r}; allowed: {', '.join(OPTIMS)}")
    if learner["credit"] not in CREDITS:
        raise ConfigError(f"learner.credit {learner['credit']!r}; allowed: {', '.join(CREDITS)}")
    for key in ("steps", "resample_flat"):
        if learner[key] < 0:
            raise ConfigError(f"learner.{key} must be >= 0, got {learner[key]}")
    _check_sft(cfg)
    for key in ("groups", "group_size", "mu", "micro_batch"):
        if learner[key] < 1:
            raise ConfigError(f"learner.{key} must be >= 1, got {learner[key]}")
    if learner["resample_flat"] and learner["group_size"] < 2:
        raise ConfigError(f"learner.resample_flat={learner['resample_flat']} needs "
                          "learner.group_size >= 2: a group of one rollout is always flat")
    if cfg.get("resume"):
        run_dir = Path(cfg["resume"])
        saved_path = run_dir / "config.yaml"
        if not saved_path.is_file():
            raise ConfigError(f"resume={run_dir}: no config.yaml there (not a gymrl run folder)")
        saved = _saved_config(saved_path, cfg)
        mine = {k: v for k, v in cfg.items() if k not in ("resume", "output_dir", "progress")}
        theirs = {k: v for k, v in saved.items() if k not in ("resume", "output_dir", "progress")}
        if mine != theirs and cfg.get("_explicit_overrides"):
            diff = sorted(k for k in set(mine) | set(theirs) if mine.get(k) != theirs.get(k))
            raise ConfigError(f"resume={run_dir}: the config differs from the run's in {diff}; "
                              "resume with no other overrides")
        saved["resume"], saved["output_dir"] = str(run_dir), str(run_dir)
        saved["progress"] = cfg.get("progress", True)
        return saved, run_dir
    if cfg.get("fork"):
        return _fork(cfg)
    run_dir = _new_run_dir(cfg)
    run_dir.mkdir(parents=True, exist_ok=True)
    clean = {k: v for k, v in cfg.items() if not k.startswith("_")}
    atomic_write_text(run_dir / "config.yaml", OmegaConf.to_yaml(OmegaConf.create(clean)))
    return clean, run_dir


def _new_run_dir(cfg: dict[str, Any]) -> Path:
    """``output_dir``, or a new folder under runs/ named for the env."""
    return Path(cfg["output_dir"]) if cfg.get("output_dir") else new_run_dir(
        "train", cfg["env"]["name"])


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """The records of a JSON-lines file (metrics, per-episode evaluations); blank lines skipped."""
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _check_sft(cfg: dict[str, Any]) -> None:
    """The SFT keys, and the SFT term's need for demonstrations."""
    sft, coef = cfg["sft"], cfg["learner"]["sft_coef"]
    if sft["schedule"] not in SFT_SCHEDULES:
        raise ConfigError(f"sft.schedule {sft['schedule']!r}; allowed: "
                          f"{', '.join(SFT_SCHEDULES)}")
    if coef < 0:
        raise ConfigError(f"learner.sft_coef must be >= 0, got {coef}")
    if cfg["learner"]["sft_max_turns"] < 0:
        raise ConfigError("learner.sft_max_turns must be >= 0 (0: every demonstration), got "
                          f"{cfg['learner']['sft_max_turns']}")
    if coef and (sft["demos"] < 1 or sft["batch_size"] < 1):
        raise ConfigError(f"learner.sft_coef={coef} needs demonstrations: sft.demos and "
                          f"sft.batch_size >= 1, got {sft['demos']} and {sft['batch_size']}")


def _fork(cfg: dict[str, Any]) -> tuple[dict[str, Any], Path]:
    """A new run folder that starts at another run's step-0 checkpoint (``fork=SRC``).

    The step-0 checkpoint, the SFT metrics and (when this run evaluates the same way) the start
    evaluation are copied; ``train`` then continues as from a resume, so a fork draws the same
    tasks and samples as a fresh run with its config would after the same SFT. (One that
    evaluates otherwise evaluates its start itself; evaluating moves no sampling stream.)
    """
    from omegaconf import OmegaConf

    src = Path(cfg["fork"]).resolve()
    start = src / "checkpoints" / "step-0"
    if not (src / "config.yaml").is_file() or not start.is_dir():
        raise ConfigError(f"fork={src}: no config.yaml and checkpoints/step-0 there (a run "
                          "folder whose SFT and start evaluation finished)")
    saved = _saved_config(src / "config.yaml", cfg)
    fixed = [*FORK_FIXED, *(f"learner.{k}" for k in FORK_FIXED_LEARNER)]
    mine, theirs = OmegaConf.create(cfg), OmegaConf.create(saved)
    clash = sorted({key for key in (o.split("=", 1)[0].strip() for o in
                                    cfg.get("_explicit_overrides") or [])
                    if any(key == k or key.startswith(k + ".") for k in fixed)
                    and OmegaConf.select(mine, key) != OmegaConf.select(theirs, key)})
    if clash:
        raise ConfigError(f"fork={src}: {clash} made the policy the fork starts from and come "
                          f"from {src / 'config.yaml'}; a fork may override the learner's "
                          "GRPO keys (not its LoRA shape or dtype), rollout, eval and logging")
    new = {k: v for k, v in cfg.items() if not k.startswith("_")}
    new.update({k: saved[k] for k in FORK_FIXED})
    new["learner"] = {**new["learner"], **{k: saved["learner"][k] for k in FORK_FIXED_LEARNER}}
    new["fork"], new["resume"] = str(src), None
    _check_sft(new)  # the source's demonstrations, this command's SFT term
    run_dir = _new_run_dir(new)
    if (run_dir / "config.yaml").exists():
        raise ConfigError(f"fork: output_dir={run_dir} already holds a run; name a new folder "
                          f"(or resume={run_dir} to continue it)")
    # config.yaml is written last: a fork stopped before it is made again from the start.
    shutil.rmtree(run_dir / "checkpoints", ignore_errors=True)
    run_dir.mkdir(parents=True, exist_ok=True)
    rows = read_jsonl(src / "metrics.jsonl")
    forked = OmegaConf.create(new)
    # The start evaluation is the source's when it would come out the same here.
    same_eval = all(OmegaConf.select(theirs, k) == OmegaConf.select(forked, k)
                    for k in ("eval.episodes", "eval.split", "rollout.max_new_tokens",
                              "rollout.backend", "rollout.dtype", "learner.device"))
    keep = [r for r in rows if r.get("step", 0) == 0 and (same_eval or "eval/reward" not in r)]
    if same_eval:
        (run_dir / "eval").mkdir(exist_ok=True)
        shutil.copy2(src / "eval" / "step-00000.jsonl", run_dir / "eval" / "step-00000.jsonl")
    atomic_write_text(run_dir / "metrics.jsonl", "".join(json.dumps(r) + "\n" for r in keep))
    tmp = run_dir / "checkpoints" / ".fork.tmp"
    shutil.copytree(start, tmp)
    fsync_path(tmp)
    os.replace(tmp, run_dir / "checkpoints" / "step-0")
    atomic_write_text(run_dir / "checkpoints" / "latest", "step-0\n")
    atomic_write_json(run_dir / "versions.json", versions())
    atomic_write_text(run_dir / "config.yaml", OmegaConf.to_yaml(forked))
    return new, run_dir


def sampling_seed(cfg: dict[str, Any]) -> int:
    """The seed of the rollouts' sampling stream: ``rollout.seed``, else the run's."""
    return cfg["seed"] if cfg["rollout"].get("seed") is None else cfg["rollout"]["seed"]


def task_seed(seed: int, step: int, k: int, tasks_per_step: int) -> int:
    """The seed task ``k`` of step ``step`` is drawn with (``tasks_per_step``: the groups a
    step may draw): fixed by the run's seed, the step and ``k``, so a resumed run, a fork and
    a benchmark draw the same tasks."""
    return seed * 1_000_003 + step * tasks_per_step + k


def _saved_config(path: Path, cfg: dict[str, Any]) -> dict[str, Any]:
    """A run's ``config.yaml``, held to the train config's schema like a new run's: a key or
    value that does not fit (hand-edited, say ``lr: fast``) is a clear error, not a crash
    mid-run. Keys gymrl gained since the run was written take today's values from ``cfg``."""
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    from gymrl.config import read_yaml_mapping
    from gymrl.learner.config import TrainConfig

    saved = read_yaml_mapping(path, f"resume={path.parent}: its config.yaml")
    try:
        checked = OmegaConf.merge(OmegaConf.structured(TrainConfig), _with_defaults(saved, cfg))
    except OmegaConfBaseException as exc:
        where = f"{exc.full_key}: " if getattr(exc, "full_key", None) else ""
        first = str(exc).split("\n")[0]
        raise ConfigError(f"resume={path.parent}: its config.yaml does not fit the train "
                          f"config: {where}{first}") from None
    return OmegaConf.to_container(checked)


def _with_defaults(saved: Any, defaults: Any) -> Any:
    """``saved`` with every key it lacks filled in from ``defaults`` (recursively)."""
    if not isinstance(saved, dict) or not isinstance(defaults, dict):
        return saved
    out = {k: _with_defaults(v, defaults.get(k)) for k, v in saved.items()}
    for key, value in defaults.items():
        if key not in out and not key.startswith("_"):
            out[key] = value
    return out


def packs_linears(cfg: dict[str, Any], dtype: str) -> bool:
    """Whether a model of ``dtype`` generates through oneDNN-packed weights on the hf path
    (``rollout.hf_pack``; null: on the CPU in float32, and in bfloat16 where the CPU multiplies
    bf16 natively: the cases measured, each sampling the plain layers' tokens)."""
    rollout, learner = cfg["rollout"], cfg["learner"]
    if rollout["backend"] != "hf" or learner["device"] != "cpu":
        return False
    if rollout.get("hf_pack") is not None:
        return bool(rollout["hf_pack"])
    return dtype == "float32" or (dtype == "bfloat16" and cpu_has_bf16_matmul())


def cpu_has_bf16_matmul() -> bool:
    """Whether this CPU multiplies bf16 natively (avx512_bf16 or AMX tiles)."""
    import torch

    checks = [getattr(torch.cpu, name, None) for name in ("_is_avx512_bf16_supported",
                                                          "_is_amx_tile_supported")]
    return any(check() for check in checks if check is not None)


class Trainer:
    """Holds the model, optimizer, reward and envs of one run."""

    def __init__(self, cfg: dict[str, Any], run_dir: Path) -> None:
        import torch

        from gymrl.backends.hf import HFBackend
        from gymrl.learner.model import resolve_model
        from gymrl.make import make_env, make_reward

        self.cfg, self.run_dir = cfg, run_dir
        # Each step frees and reallocates the same large buffers: reuse them without page
        # faults (memory.py: 1.25x faster full fine-tuning updates of 4 groups on the CPU).
        keep_freed_memory()
        seed = cfg["seed"]
        random.seed(seed)
        np.random.seed(seed)
        torch.manual_seed(seed)
        self.reward = make_reward(cfg["env"]["name"], cfg["reward"])
        flat_on = cfg["learner"]["flat_on"]
        if flat_on and flat_on not in self.reward.weights:
            raise ConfigError(f"learner.flat_on {flat_on!r} is not a component of reward "
                              f"{'+'.join(self.reward.weights)}; allowed: "
                              f"{', '.join(self.reward.weights)}")
        # Held-out evaluation keeps its own reward, so its cost percentiles do not leak into
        # the training reward's state.
        # Frozen: a rolling normaliser (cost) scores every evaluation against the same fixed
        # bounds, so evaluations at different steps compare.
        self.eval_reward = make_reward(cfg["env"]["name"], cfg["reward"]).frozen()
        options = dict(cfg["env"]["options"])

        def env_on(split: str, reward: Any) -> Any:
            return make_env(cfg["env"]["name"], reward=reward, **{"split": split, **options})

        self.env_on = env_on
        learner, rollout = cfg["learner"], cfg["rollout"]
        n = (learner["groups"] + learner["resample_flat"]) * learner["group_size"]
        self.train_envs = [env_on("train", self.reward) for _ in range(n)]
        path = resolve_model(cfg["model"])
        sampling = {"temperature": rollout["temperature"], "top_p": rollout["top_p"],
                    "max_new_tokens": rollout["max_new_tokens"],
                    "batch_size": rollout["batch_size"], "seed": sampling_seed(cfg)}
        # The learner's model (and tokenizer); on the hf rollout path it also generates.
        self.learner_backend = HFBackend(path, device=learner["device"], dtype=learner["dtype"],
                                         **sampling)
        self.backend: Any = self.learner_backend
        if rollout["backend"] == "hf" and rollout["hf_dtype"]:  # a copy in another dtype
            if (rollout["hf_dtype"] == "bfloat16" and learner["device"] == "cpu"
                    and not cpu_has_bf16_matmul()):
                warnings.warn("rollout.hf_dtype=bfloat16 on a CPU without avx512_bf16 or AMX: "
                              "bf16 matmuls are emulated there (measured ~0.2 GFLOP/s on an "
                              "AVX2 machine, hundreds of times slower than fp32); leave "
                              "rollout.hf_dtype unset on this machine", stacklevel=2)
            self.backend = HFBackend(path, device=learner["device"], dtype=rollout["hf_dtype"],
                                     pack_linear=packs_linears(cfg, rollout["hf_dtype"]),
                                     **sampling)
        if rollout["backend"] == "vllm":
            from gymrl.backends.vllm import VLLMBackend

            self.backend = VLLMBackend(path, dtype=rollout["dtype"],
                                       gpu_memory_utilization=rollout["gpu_memory_utilization"],
                                       **sampling)
        model = self.learner_backend.model
        if learner["lora"]:
            from peft import LoraConfig, get_peft_model

            model = get_peft_model(model, LoraConfig(
                r=learner["lora_r"], lora_alpha=learner["lora_alpha"],
                lora_dropout=learner["lora_dropout"], task_type="CAUSAL_LM",
                target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj",
                                "up_proj", "down_proj"]))
            self.learner_backend.model = model
        self.model = model
        self.device = self.learner_backend.model.device
        # The KL reference is the policy GRPO starts from, after SFT (set_reference): a frozen
        # copy of the model (full fine-tuning) or of the LoRA adapter's weights.
        self.ref_model = None
        self.ref_state: dict[str, Any] | None = None
        if learner["beta"] and not learner["lora"]:
            import copy

            self.ref_model = copy.deepcopy(model).eval().requires_grad_(False)
        params = [p for p in model.parameters() if p.requires_grad]
        # What GRPO may not move (SFT trains everything): AdamW skips a weight with no grad.
        self.held_in_rl = [p for n, p in model.named_parameters()
                           if p.requires_grad and any(m in n for m in MLP_MODULES)
                           ] if learner["rl_modules"] == "attention" else []
        self.optimizer = torch.optim.AdamW(
            params, lr=learner["lr"], weight_decay=learner["weight_decay"],
            **({"fused": True} if learner["optim"] == "adamw_torch_fused" else {}))
        # The learner's own model multiplies through oneDNN-packed weights (rollout.hf_pack):
        # they are packed again after each update (a fused step writes them without bumping
        # their version counters, hence the hook), and the rollouts and the update's forward
        # passes of a step share one packing (packed.py). The KL reference stays plain.
        if packs_linears(cfg, learner["dtype"]):
            from gymrl.backends.packed import pack_linears, repack_after

            pack_linears(model)
            repack_after(self.optimizer, model)
        self.step = 0
        self.sft_done = False
        self._demos: list[Sequence] | None = None
        self.metrics_path = run_dir / "metrics.jsonl"

    # -- logging ---------------------------------------------------------------------------
    def log(self, metrics: dict[str, Any]) -> None:
        from gymrl import plugins

        with self.metrics_path.open("a", encoding="utf-8") as fh:
            fh.write(json.dumps(metrics) + "\n")
        plugins.notify_metrics(metrics, step=metrics.get("step", self.step))

    def start_evaluated(self) -> bool:
        """Whether the metrics hold the step-0 evaluation (a fork may still owe it)."""
        rows = read_jsonl(self.metrics_path) if self.metrics_path.is_file() else []
        return any("eval/reward" in r and r.get("step") == 0 for r in rows)

    def trim_metrics(self, after_step: int) -> None:
        """On resume, drop metric lines written after the checkpoint (they will be redone).

        A last line without its newline was cut short by a kill mid-write: it is dropped too
        (its step came after the checkpoint, which is written after the step's line)."""
        if not self.metrics_path.is_file():
            return
        text = self.metrics_path.read_text()
        lines = text.splitlines()
        if lines and not text.endswith("\n"):
            lines.pop()
        keep = [line for line in lines
                if line.strip() and json.loads(line).get("step", 0) <= after_step]
        atomic_write_text(self.metrics_path, "".join(k + "\n" for k in keep))

    # -- checkpoints -----------------------------------------------------------------------
    def save(self) -> None:
        # The stream the rollouts sample from: the learner's own (hf) or the rollout engine's.
        rng = checkpoint.rng_state(self.backend.sampling_state())
        checkpoint.save(self.run_dir, self.step, model=self.model, optimizer=self.optimizer,
                        reward=self.reward, rng=rng, extra={"sft_done": self.sft_done},
                        keep=self.cfg["keep_checkpoints"])

    def restore(self) -> bool:
        path = checkpoint.latest(self.run_dir)
        if path is None:
            return False
        state = checkpoint.load(path, model=self.model, optimizer=self.optimizer,
                                reward=self.reward)
        # At step 0 nothing has sampled yet (evaluations leave the stream alone), so the
        # sampling stream stays the backend's fresh one, from this run's rollout.seed: a fork
        # starts there too, also from a start saved by older code whose evaluation moved it.
        checkpoint.set_rng_state(state["rng"])
        if state["step"] and state["rng"].get("extra") is not None:
            self.backend.set_sampling_state(state["rng"]["extra"])
        for group in self.optimizer.param_groups:  # a fork may train at another rate
            group["lr"] = self.cfg["learner"]["lr"]
            group["weight_decay"] = self.cfg["learner"]["weight_decay"]
        self.step, self.sft_done = state["step"], state.get("sft_done", True)
        self.trim_metrics(self.step)
        self.sync_rollout_weights()
        return True

    def sync_rollout_weights(self) -> None:
        """After an update: a separate rollout engine (vLLM) gets the learner's weights."""
        if self.backend is not self.learner_backend:
            self.backend.load_weights(self.model)

    # -- SFT warm start --------------------------------------------------------------------
    def demonstrations(self) -> list[Sequence]:
        """The env's scripted demonstrations as training sequences (the policy's turns
        trainable): the same ones on every call and after a resume (seeded from the run's)."""
        if self._demos is not None:
            return self._demos
        from gymrl.backends.scripted import ScriptedBackend
        from gymrl.evaluate import run_episodes

        sft = self.cfg["sft"]
        demo_env = self.env_on("train", self.eval_reward)
        policy = sft["policy"] or demo_env.unwrapped.demo_policy
        ScriptedBackend(policy).check_env(demo_env.unwrapped)
        records = run_episodes(lambda: self.env_on("train", self.eval_reward),
                               ScriptedBackend(policy), episodes=sft["demos"],
                               seed=10_000 + self.cfg["seed"], batch_size=16)
        tok = self.learner_backend.tokenizer
        seqs = []
        for episode, _ in records:
            # Each episode's own instructions: an env may show different tools per task.
            messages = ([{"role": "system", "content": episode.system_prompt}]
                        if episode.system_prompt else [])
            for turn in episode.turns:
                role = "assistant" if turn.role == "policy" else "user"
                messages.append({"role": role, "content": turn.text})
            seqs.append(demonstration(tok, messages))
        longest = max((len(t) for s in seqs for t in s.turn_tokens()), default=0)
        if longest > self.cfg["rollout"]["max_new_tokens"]:
            warnings.warn(f"a demonstration's turn is {longest} tokens, more than "
                          f"rollout.max_new_tokens={self.cfg['rollout']['max_new_tokens']}: "
                          "the policy cannot finish such a turn when it samples", stacklevel=2)
        self._demos = seqs
        return seqs

    def term_demonstrations(self) -> list[Sequence]:
        """The demonstrations the SFT term of a GRPO update draws from (learner.sft_max_turns)."""
        most = self.cfg["learner"]["sft_max_turns"]
        pool = [s for s in self.demonstrations() if not most or len(s.turn_tokens()) <= most]
        if not pool:
            raise ConfigError(f"learner.sft_max_turns={most}: no demonstration has that few "
                              "policy turns; raise it, or 0 for every demonstration")
        return pool

    def demo_loss(self, batch: list[Sequence]) -> Any:
        """Mean cross-entropy of the demonstrations' policy tokens under the current model."""
        ids, attention, mask = self.pad(batch)
        logp, _ = token_logprobs(self.model, ids, attention, mask)
        return -(logp * mask).sum() / mask.sum().clamp(min=1)

    def sft(self) -> dict[str, float]:
        """Teach the tag grammar from the env's scripted demonstrations (cross-entropy)."""
        sft = self.cfg["sft"]
        seqs = self.demonstrations()
        rng = random.Random(self.cfg["seed"])
        losses = []
        start = time.perf_counter()
        self.model.train()
        for step in range(sft["steps"]):
            for group in self.optimizer.param_groups:
                group["lr"] = sft_lr(sft, step)
            loss = self.demo_loss(rng.sample(seqs, min(sft["batch_size"], len(seqs))))
            self.optimizer.zero_grad()
            loss.backward()
            self.optimizer.step()
            losses.append(loss.item())
        for group in self.optimizer.param_groups:
            group["lr"] = self.cfg["learner"]["lr"]
        self.optimizer.state.clear()  # GRPO starts with fresh moments
        self.sft_done = True
        self.sync_rollout_weights()
        return {"sft/loss_first": losses[0], "sft/loss_last": losses[-1],
                "sft/losses": [round(x, 4) for x in losses], "sft/demos": len(seqs),
                "sft/steps": len(losses), "time/sft_s": time.perf_counter() - start}

    def pad(self, seqs: list[Sequence]) -> tuple[Any, Any, Any]:
        import torch

        width = max(len(s.ids) for s in seqs)
        pad = self.learner_backend.tokenizer.pad_token_id
        ids = torch.tensor([s.ids + [pad] * (width - len(s.ids)) for s in seqs])
        attention = torch.tensor([[1] * len(s.ids) + [0] * (width - len(s.ids)) for s in seqs])
        mask = torch.tensor([s.mask + [0] * (width - len(s.mask)) for s in seqs])
        return ids.to(self.device), attention.to(self.device), mask.to(self.device)

    def play(self, rollouts: list[Rollout], backend: Any = None) -> None:
        """Play rollouts to their ends with ``backend`` (default: the rollout backend); the
        learner's own model generates with LoRA merged."""
        from gymrl.learner.model import lora_merged

        backend = backend or self.backend
        if backend is not self.learner_backend:
            run_rollouts(backend, rollouts)
            return
        with lora_merged(self.model):
            run_rollouts(backend, rollouts)

    @property
    def eval_backend(self) -> Any:
        """What evaluations generate with: on the hf path the learner's own model (so a
        rollout copy in bf16 changes what is sampled for training, not what is measured), the
        vLLM engine on its path."""
        return self.learner_backend if self.cfg["rollout"]["backend"] == "hf" else self.backend

    # -- evaluation ------------------------------------------------------------------------
    def evaluate(self) -> dict[str, float]:
        """Greedy rollouts on held-out tasks: reward, each component, and the env's metrics."""
        ev = self.cfg["eval"]
        backend = self.eval_backend
        temperature = backend.temperature
        backend.temperature = 0.0
        self.model.eval()
        envs = [self.env_on(ev["split"], self.eval_reward) for _ in range(ev["episodes"])]
        rollouts = []
        for i, env in enumerate(envs):
            _, info = env.reset(seed=i)
            rollouts.append(Rollout(group=i, env=env, messages=info["messages"]))
        try:
            with sampling_stream_kept(backend):  # evaluating changes no training draw
                self.play(rollouts, backend)
        finally:
            backend.temperature = temperature
        from gymrl.evaluate import episode_record, summarise
        records = [(r.episode, r.env.unwrapped.metrics(r.episode)
                    if hasattr(r.env.unwrapped, "metrics") else {}) for r in rollouts]
        atomic_write_text(self.eval_path(self.step), "".join(
            json.dumps(episode_record(e, m), default=str) + "\n" for e, m in records))
        overall = summarise(records, group_by=(),
                            ratios=envs[0].unwrapped.summary_ratios)["overall"]
        return {f"eval/{k}": v for k, v in overall.items()}

    def eval_path(self, step: int) -> Path:
        """Per-episode records of the held-out evaluation after ``step`` steps."""
        return self.run_dir / "eval" / f"step-{step:05d}.jsonl"

    # -- one GRPO step ---------------------------------------------------------------------
    def grpo_step(self) -> dict[str, Any]:
        import torch

        learner = self.cfg["learner"]
        start = time.perf_counter()
        rollouts, played, flat = self.draw_batch()
        rollout_s = time.perf_counter() - start
        rewards = torch.tensor([r.reward for r in rollouts])
        group_ids = torch.tensor([r.group for r in rollouts])
        advantages, _ = group_advantages(rewards, group_ids, learner["scale_rewards"])
        drawn = len(played) // learner["group_size"]
        shift = torch.zeros_like(advantages)
        if learner["action_baseline"]:
            informative = torch.tensor([bool((rewards[group_ids == g] != rewards[i]).any())
                                        for i, g in enumerate(group_ids.tolist())])
            shifted = action_baseline(advantages, [
                tuple(c.name for c in r.episode.tool_calls) for r in rollouts], informative)
            shift, advantages = advantages - shifted, shifted
        seqs = [r.seq for r in rollouts]
        per_turn = None
        if learner["credit"] == "reward_to_go" and any(any(r.turn_rewards) for r in rollouts):
            per_turn = [[a - float(shift[i]) for a in advs] for i, advs in enumerate(
                turn_advantages(rewards, group_ids, [r.turn_rewards for r in rollouts],
                                learner["scale_rewards"]))]
        n_tokens = sum(s.policy_tokens for s in seqs)
        max_tokens = max(s.policy_tokens for s in seqs)
        # Only sequences with a non-zero advantage somewhere (or a KL term) pass through the
        # model: the others' loss and gradient are 0. The loss is still normalised over the
        # whole batch (n_sequences, n_tokens), so the update is the same.
        rows = training_rows(advantages, per_turn, bool(learner["beta"]))
        # Old log-probs: with one pass the current policy is the old one (ratio 1, detached).
        micro = learner["micro_batch"]
        # Micro-batches of similar lengths: a chunk is padded to its longest sequence, and a
        # 5-turn episode is nearly twice as long as a 2-turn one.
        by_length = sorted(rows, key=lambda i: len(seqs[i].ids))
        chunks = [by_length[i:i + micro] for i in range(0, len(by_length), micro)]
        old: dict[int, Any] = {}
        ref: dict[int, Any] = {}
        temperature = self.cfg["rollout"]["temperature"] or 1.0
        with torch.no_grad():
            for c in chunks:
                ids, attention, mask = self.pad([seqs[i] for i in c])
                if learner["mu"] > 1:
                    old[c[0]] = token_logprobs(self.model, ids, attention, mask, temperature)[0]
                if learner["beta"]:
                    ref[c[0]] = self.reference_logprobs(ids, attention, mask, temperature)
        stats: dict[str, list[float]] = {"loss": [], "ratio": [], "clipped": [], "kl": [],
                                         "entropy": [], "sft": []}
        # No signal (every advantage 0, no KL term): no update. AdamW would still move the
        # weights by about the learning rate (its momentum; and it normalises a zero or tiny
        # gradient to a full-size step): measured on the router, steps whose gradient norm was
        # ~2e-4 drove the policy off its own tag grammar.
        # With learner.sft_coef, every update also takes a batch of demonstrations (the same
        # ones on resume: drawn from the run's seed and the step).
        coef = learner["sft_coef"]
        demos: list[Sequence] = []
        if coef:
            pool = self.term_demonstrations()
            demos = random.Random(self.cfg["seed"] * 1_000_003 + self.step).sample(
                pool, min(self.cfg["sft"]["batch_size"], len(pool)))
        signal = bool(rows) or bool(demos)
        grad_norm = math.nan
        train_start = time.perf_counter()
        self.model.train()
        for _ in range(learner["mu"] if signal else 0):
            self.optimizer.zero_grad()
            total = 0.0
            for c in chunks:
                ids, attention, mask = self.pad([seqs[i] for i in c])
                logp, entropy = token_logprobs(self.model, ids, attention, mask, temperature)
                old_logp = old.get(c[0], logp.detach())
                adv = (advantages[c] if per_turn is None else self.token_advantages(
                    [seqs[i] for i in c], [per_turn[i] for i in c], ids.shape[1])
                       ).to(self.device)
                loss_tok, st = per_token_loss(
                    logp, old_logp, adv, epsilon=learner["epsilon"],
                    epsilon_high=learner["epsilon_high"], ref_logp=ref.get(c[0]),
                    beta=learner["beta"])
                fmask = mask.float()
                loss = aggregate(loss_tok, fmask, learner["loss_type"], n_sequences=len(seqs),
                                 n_tokens=n_tokens, max_tokens=max_tokens)
                loss.backward()
                total += loss.item()
                denom = float(fmask.sum().clamp(min=1))
                stats["ratio"].append(float((st["ratio"] * fmask).sum()) / denom)
                stats["clipped"].append(float((st["clipped"] * fmask).sum()) / denom)
                stats["entropy"].append(float((entropy * fmask).sum()) / denom)
                if "kl" in st:
                    stats["kl"].append(float((st["kl"] * fmask).sum()) / denom)
            if demos:
                demo_loss = self.demo_loss(demos)
                (coef * demo_loss).backward()
                stats["sft"].append(demo_loss.item())
            for param in self.held_in_rl:  # learner.rl_modules: GRPO leaves these alone
                param.grad = None
            if learner["max_grad_norm"]:
                grad_norm = float(torch.nn.utils.clip_grad_norm_(
                    [p for p in self.model.parameters() if p.requires_grad],
                    learner["max_grad_norm"]))
            self.optimizer.step()
            stats["loss"].append(total)
        self.sync_rollout_weights()
        train_s = time.perf_counter() - train_start
        self.step += 1
        # What the policy sampled this step: every rollout played, flat groups set aside by
        # dynamic sampling included.
        sampled = torch.tensor([r.reward for r in played])
        metrics: dict[str, Any] = {
            "step": self.step,
            "reward": float(sampled.mean()),
            "reward/std": float(sampled.std()) if len(sampled) > 1 else 0.0,
            "loss/policy": _mean(stats["loss"]),
            "ratio": _mean(stats["ratio"]),
            "clip_fraction": _mean(stats["clipped"]),
            "entropy": _mean(stats["entropy"]),
            "grad_norm": grad_norm,
            "update/skipped": int(not signal),
            "groups/drawn": drawn,
            "groups/flat": flat,  # of those drawn
            "groups/flat_fraction": flat / drawn,
            "tokens/policy": n_tokens,
            "tokens/total": sum(len(s.ids) for s in seqs),
            "tokens/trained": sum(len(seqs[i].ids) for i in rows),  # what the update runs through
            # every token sampled this step (set-aside groups too) over the step's time
            "tokens/s": sum(r.seq.policy_tokens for r in played) / max(rollout_s + train_s,
                                                                       1e-9),
            "time/rollout_s": rollout_s,
            "time/train_s": train_s,
        }
        if stats["kl"]:
            metrics["kl"] = float(np.mean(stats["kl"]))
        if stats["sft"]:
            metrics["loss/sft"] = float(np.mean(stats["sft"]))  # the demonstrations' cross-entropy
        components: dict[str, list[float]] = {}
        env_metrics: dict[str, list[float]] = {}
        for r in played:
            for name, value in r.episode.rewards.items():
                components.setdefault(name, []).append(value)
            env = r.env.unwrapped
            for name, value in (env.metrics(r.episode) if hasattr(env, "metrics") else
                                {}).items():
                if isinstance(value, int | float) and not isinstance(value, bool):
                    env_metrics.setdefault(name, []).append(float(value))
        metrics.update({f"reward/{k}": float(np.mean(v)) for k, v in components.items()})
        metrics.update({f"env/{k}": float(np.mean(v)) for k, v in env_metrics.items()})
        return metrics

    def draw_batch(self) -> tuple[list[Rollout], list[Rollout], int]:
        """This step's training batch (``groups`` tasks x ``group_size`` rollouts, played),
        every rollout played for it, and how many of the groups played were flat.

        With ``learner.resample_flat=K`` (DAPO's dynamic sampling) a group whose rewards are
        all equal, which gives no gradient, is set aside and another task drawn in its place,
        up to K extra tasks a step; set-aside groups fill the batch only when those run out,
        so the batch keeps its size. Task ``k`` of step ``s`` is seeded from ``(s, k)``: the
        same tasks on resume, and with K=0 the same tasks as without the option.
        """
        learner = self.cfg["learner"]
        groups, size = learner["groups"], learner["group_size"]
        most = groups + learner["resample_flat"]
        self.model.eval()
        kept: list[list[Rollout]] = []
        flat: list[list[Rollout]] = []
        played: list[Rollout] = []
        drawn = 0
        while len(kept) < groups and drawn < most:
            wave = range(drawn, drawn + min(groups - len(kept), most - drawn))
            rollouts: list[Rollout] = []
            for k in wave:
                rollouts.extend(reset_group(self.train_envs[k * size:(k + 1) * size],
                                            task_seed(self.cfg["seed"], self.step, k, most), k,
                                            same_seed=learner["same_env_seed"]))
            self.play(rollouts)
            played.extend(rollouts)
            for k in wave:
                group = [r for r in rollouts if r.group == k]
                (flat if _is_flat(group, learner["flat_on"]) else kept).append(group)
            drawn = wave.stop
        # The informative groups, then set-aside ones while short, kept in the order drawn
        # (with K=0: the batch as drawn).
        batch = sorted(kept + flat[:groups - len(kept)], key=lambda group: group[0].group)
        for g, group in enumerate(batch):
            for r in group:
                r.group = g
        return [r for group in batch for r in group], played, len(flat)

    @staticmethod
    def token_advantages(seqs: list[Sequence], per_turn: list[list[float]], width: int) -> Any:
        """(B, width) advantages: each policy token gets its turn's advantage, others 0."""
        import torch

        out = torch.zeros(len(seqs), width)
        for row, (seq, advs) in enumerate(zip(seqs, per_turn, strict=True)):
            for col, turn in enumerate(seq.turn):
                if turn >= 0:
                    out[row, col] = advs[min(turn, len(advs) - 1)]
        return out

    def set_reference(self, *, fresh: bool) -> None:
        """Fix the KL reference (``learner.beta`` > 0) at the policy GRPO starts from: the
        model after SFT, not the base model (with LoRA, SFT trains the adapter too, so the
        adapter-free model would be a policy that never learned the env's grammar). ``fresh``:
        take the current weights and save them (``reference.pt``, atomically); else load them
        (a resumed run)."""
        if not self.cfg["learner"]["beta"]:
            return
        import torch

        path = self.run_dir / "reference.pt"
        if fresh:
            state = checkpoint.trainable_state(self.model)
            tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
            torch.save(state, tmp)
            fsync_path(tmp)
            os.replace(tmp, path)
        elif path.is_file():
            state = torch.load(path, weights_only=True)
        else:
            raise ConfigError(f"{self.run_dir} has no reference.pt, the KL reference of a run "
                              "with learner.beta > 0 past step 0 (written by an older gymrl?); "
                              "without it the KL term has nothing to compare with: start a new "
                              "run")
        if self.ref_model is not None:
            self.ref_model.load_state_dict(state, strict=False)
        else:
            self.ref_state = state

    def reference_logprobs(self, ids: Any, attention: Any, mask: Any, temperature: float) -> Any:
        if self.ref_model is not None:
            return token_logprobs(self.ref_model, ids, attention, mask, temperature)[0]
        if self.ref_state is None:  # no set_reference() yet: the adapter-free model
            with self.model.disable_adapter():
                return token_logprobs(self.model, ids, attention, mask, temperature)[0]
        # LoRA: the reference adapter in place of the current one for this forward pass.
        current = checkpoint.trainable_state(self.model)
        checkpoint.assign(self.model, self.ref_state)
        try:
            return token_logprobs(self.model, ids, attention, mask, temperature)[0]
        finally:
            checkpoint.assign(self.model, current)


def sft_lr(sft: dict[str, Any], step: int) -> float:
    """The SFT learning rate at ``step`` (0-based) of ``sft["steps"]``."""
    if sft["schedule"] == "constant":
        return sft["lr"]
    return sft["lr"] * 0.5 * (1 + math.cos(math.pi * step / sft["steps"]))


def _is_flat(group: list[Rollout], on: str | None = None) -> bool:
    """Every reward of the group equal (group-relative advantages are all 0), or with ``on``
    every value of that reward component (a group all right or all wrong, for outcome)."""
    if on:
        return len({r.episode.rewards[on] for r in group}) <= 1
    return len({r.reward for r in group}) <= 1


def _mean(values: list[float]) -> float:
    """The mean, or NaN for a step that made no update (nothing was measured)."""
    return float(np.mean(values)) if values else math.nan


def train(cfg: dict[str, Any]) -> dict[str, Any]:
    """Run (or resume) training from a resolved config dict; return the run's summary."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    cfg, run_dir = prepare_run(cfg)
    trainer = Trainer(cfg, run_dir)
    resumed = bool(cfg.get("resume") or cfg.get("fork")) and trainer.restore()
    learner = cfg["learner"]
    if learner["sft_coef"] and learner["steps"]:
        trainer.term_demonstrations()  # an SFT term with no demonstration fails now, not later
    if resumed and trainer.step == 0 and not trainer.start_evaluated():
        # A fork that evaluates differently from its source (or was stopped while doing so);
        # saved, so a resume goes on from after it, as this run does.
        trainer.log({"step": 0, **trainer.evaluate()})
        trainer.save()
    if not resumed:
        # A fresh start (or a resume killed before its first checkpoint) redoes everything.
        trainer.metrics_path.unlink(missing_ok=True)
        atomic_write_json(run_dir / "versions.json", versions())
        if cfg["sft"]["steps"] > 0:
            trainer.log({"step": 0, **trainer.sft()})
        trainer.log({"step": 0, **trainer.evaluate()})
        trainer.save()
    # At step 0 the weights are those after SFT (also when resumed from the step-0 checkpoint).
    trainer.set_reference(fresh=not resumed or trainer.step == 0)
    progress = Progress(TextColumn("[bold]train[/] {task.description}"), BarColumn(),
                        MofNCompleteColumn(), TextColumn("reward {task.fields[reward]:.3f}"),
                        TimeElapsedColumn(), disable=not cfg.get("progress", True))
    with progress:
        bar = progress.add_task(f"{cfg['env']['name']} {cfg['model']}", total=learner["steps"],
                                completed=trainer.step, reward=0.0)
        while trainer.step < learner["steps"]:
            metrics = trainer.grpo_step()
            every = cfg["eval"]["every"]
            if (every and trainer.step % every == 0) or trainer.step == learner["steps"]:
                metrics.update(trainer.evaluate())
            trainer.log(metrics)
            progress.update(bar, advance=1, reward=metrics["reward"])
            if trainer.step % cfg["checkpoint_every"] == 0 or trainer.step == learner["steps"]:
                trainer.save()
    summary = finish(trainer)
    return summary


def training_rows(advantages: Any, per_turn: list[list[float]] | None, kl: bool) -> list[int]:
    """The rollouts an update must run through: all of them with a KL term; otherwise those
    with a non-zero advantage (per turn, when turns have their own)."""
    if kl:
        return list(range(len(advantages)))
    if per_turn is not None:
        return [i for i, advs in enumerate(per_turn) if any(a != 0 for a in advs)]
    return [i for i, a in enumerate(advantages.tolist()) if a != 0]


def finish(trainer: Trainer) -> dict[str, Any]:
    """Save the final model, the curves PNG and a summary of start vs end."""
    from gymrl.plot import plot_run

    run_dir = trainer.run_dir
    model = trainer.model
    final = model.merge_and_unload() if hasattr(model, "merge_and_unload") and \
        trainer.cfg["learner"]["lora"] else model
    # Written beside and renamed: a run killed while saving leaves the previous model/ or
    # none, never half of one (resume= then writes it again).
    # (A fixed name, so a save killed midway is cleared by the next; made with the umask's
    # mode, as save_pretrained's own folder would be.)
    tmp = run_dir / ".model.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        final.save_pretrained(tmp, safe_serialization=True)
        trainer.learner_backend.tokenizer.save_pretrained(tmp)
        fsync_path(tmp)
        if (run_dir / "model").exists():
            shutil.rmtree(run_dir / "model")
        os.replace(tmp, run_dir / "model")
        fsync_path(run_dir, files=False)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    evals = [r for r in read_jsonl(trainer.metrics_path) if "eval/reward" in r]
    summary: dict[str, Any] = {"run_dir": str(run_dir), "steps": trainer.step,
                               "start": evals[0] if evals else None,
                               "end": evals[-1] if evals else None}
    first, last = trainer.eval_path(0), trainer.eval_path(trainer.step)
    if trainer.step and first.is_file() and last.is_file():
        from gymrl.evaluate import paired_change

        # The trained policy against the starting one (after SFT) on the same held-out episodes.
        summary["change"] = paired_change(read_jsonl(first), read_jsonl(last))
    atomic_write_json(run_dir / "summary.json", summary)
    plot_run(run_dir)
    return summary
