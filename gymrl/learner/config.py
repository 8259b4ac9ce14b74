"""The ``gymrl train`` config: model, env, reward, learner, rollout, SFT, evaluation, logging."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gymrl.config import EnvConfig, RewardConfig, _help


@dataclass
class LearnerConfig:
    # The defaults are the main job's on 2 CPU cores (README, "Where training stands
    # (measured)": SFT, GRPO steps of 4 tasks x 8 rollouts, two held-out evaluations, and the
    # time that takes; the router's recipe takes 6 steps); real runs raise learner.steps.
    steps: int = _help("GRPO steps (one batch of rollouts and its updates each)", 4)
    groups: int = _help("tasks per step", 4)
    group_size: int = _help("rollouts per task (G)", 8)
    lr: float = _help("AdamW learning rate", 2e-4)
    weight_decay: float = _help("AdamW weight decay", 0.0)
    resample_flat: int = _help(
        "dynamic sampling (DAPO): up to this many extra tasks a step draws in place of groups "
        "whose rewards are all equal (no advantage); 0: off", 0)
    flat_on: str | None = _help(
        "the reward component whose values, all equal, make a group flat for resample_flat "
        "(DAPO resamples groups that are all right or all wrong: flat_on=outcome); default: "
        "the total reward", None)
    same_env_seed: bool = _help(
        "reset every rollout of a group with the same env seed (common random numbers: the "
        "env's random draws start from one state for the whole group, so rollouts that act "
        "alike get the same luck); off: each rollout its own seed", False)
    scale_rewards: str = _help(
        "advantage scaling: group (divide by each group's reward std, as in GRPO) | batch "
        "(by the whole batch's std) | none. batch is the default: a group whose rewards differ "
        "only a little (the same wrong answer at different prices) keeps a small advantage "
        "instead of being blown up to unit size", "batch")
    loss_type: str = _help("loss aggregation: grpo | dr_grpo | dapo", "grpo")
    action_baseline: bool = _help(
        "subtract from each advantage the batch mean advantage of rollouts that called the same "
        "tools (by name, in order): credit for choosing *per task*, not for an action that wins "
        "on average", False)
    credit: str = _help("episode: every turn gets the episode's advantage; reward_to_go: a "
                        "turn is credited with what was earned from it on (uses dense per-turn "
                        "rewards; the same as episode when the env gives none)", "reward_to_go")
    epsilon: float = _help("lower clip range of the ratio", 0.2)
    epsilon_high: float | None = _help("upper clip range (default: epsilon)", None)
    beta: float = _help("weight of the k3 KL to the frozen starting policy (0: no reference)",
                        0.0)
    sft_coef: float = _help(
        "weight of an SFT term in every GRPO update: the mean cross-entropy of sft.batch_size "
        "of the env's scripted demonstrations (those of the warm start), added to the policy "
        "loss, so behaviour the step's few tasks do not reward is held where SFT put it (as "
        "InstructGPT mixed its pretraining loss into PPO); 0: off", 0.0)
    sft_max_turns: int = _help(
        "the SFT term draws only demonstrations with at most this many policy turns (the short "
        "tasks, which a warm-started policy mostly solves and GRPO then gets no signal from); "
        "0: every demonstration", 0)
    rl_modules: str = _help(
        "the weights GRPO updates: all | attention (the q/k/v/o projections, or their LoRA "
        "adapters; the MLP's stay where SFT left them). SFT trains all of them either way",
        "all")
    optim: str = _help(
        "AdamW's implementation: adamw_torch (torch's default; on the CPU a loop over the "
        "weights) | adamw_torch_fused (one kernel for all of them, transformers' default: "
        "faster for full fine-tuning, where the step touches every weight; a LoRA adapter's "
        "few million weights gain nothing measurable). Not bit-identical to each other, so "
        "the default stays the one every recorded run used", "adamw_torch")
    mu: int = _help("optimisation passes over each batch", 1)
    micro_batch: int = _help("sequences per forward/backward (gradient accumulation)", 8)
    max_grad_norm: float = _help("gradient clipping norm (0: off)", 1.0)
    lora: bool = _help("train a LoRA adapter (peft) instead of every weight", True)
    lora_r: int = _help("LoRA rank", 16)
    lora_alpha: int = _help("LoRA alpha", 32)
    lora_dropout: float = _help("LoRA dropout", 0.0)
    device: str = _help("where the learner's model trains: cpu, cuda, cuda:N", "cpu")
    dtype: str = _help("the learner's weights: float32 | bfloat16 (GPU) | float16 | auto",
                       "float32")


@dataclass
class RolloutConfig:
    temperature: float = _help("sampling temperature", 1.0)
    top_p: float = _help("nucleus sampling", 1.0)
    max_new_tokens: int = _help("tokens per policy turn", 64)
    batch_size: int = _help("sequences per generate call", 32)
    seed: int | None = _help("seed of the sampling stream (default: the run's seed); a fork "
                             "with another one samples other rollouts of the same tasks from "
                             "the same start (run-to-run noise)", None)
    backend: str = _help("hf: the learner's own model generates (CPU or GPU); vllm: a vLLM "
                         "engine on the GPU (extra gymrl[vllm]), weights synced after updates",
                         "hf")
    dtype: str = _help("the vllm engine's weights", "bfloat16")
    hf_dtype: str | None = _help(
        "backend=hf: null generates with the learner's own model; bfloat16 | float16 | float32 "
        "with a copy in that dtype, synced after each update (bf16 rollouts ~1.5x the tokens/s "
        "on a CPU with avx512_bf16; evaluations still use the learner's model)", None)
    hf_pack: bool | None = _help(
        "backend=hf on the CPU: multiply through oneDNN-packed copies of the linear layers' "
        "weights (the same math in the same dtype, another kernel). The learner's own model "
        "packs once per change of its weights: a step's rollouts (LoRA merged) and its "
        "update's forward passes (full fine-tuning) share one packing; a rollout copy packs "
        "after each sync. null: on where that model is float32 on the CPU, or bfloat16 on a "
        "CPU with avx512_bf16/AMX; true | false forces it", None)
    gpu_memory_utilization: float = _help("GPU memory share of the vllm engine", 0.3)


@dataclass
class SFTConfig:
    steps: int = _help("SFT warm-start steps on scripted demonstrations (0: skip)", 24)
    policy: str | None = _help("the env's scripted policy that writes the demonstrations "
                               "(default: the env's demo_policy)", None)
    demos: int = _help("demonstration episodes", 128)
    batch_size: int = _help("sequences per SFT step", 8)
    lr: float = _help("SFT learning rate (the peak, with a schedule)", 1e-3)
    schedule: str = _help("the SFT learning rate over its steps: constant | cosine (from "
                          "sft.lr at the first step towards 0 at the last)", "constant")


@dataclass
class EvalEveryConfig:
    every: int = _help("evaluate on held-out tasks every N steps (0: only at start and end)", 0)
    episodes: int = _help("held-out episodes per evaluation (greedy decoding)", 24)
    split: str = _help("the held-out split", "test")


@dataclass
class TrainConfig:
    model: str = _help("smollm2 (embedded), a local model path, or a Hugging Face id",
                       "smollm2")
    env: EnvConfig = _help("the environment", factory=EnvConfig)
    reward: RewardConfig = _help("the reward (default: the env's own)", factory=RewardConfig)
    learner: LearnerConfig = _help("GRPO", factory=LearnerConfig)
    rollout: RolloutConfig = _help("sampling", factory=RolloutConfig)
    sft: SFTConfig = _help("supervised warm start", factory=SFTConfig)
    eval: EvalEveryConfig = _help("held-out evaluation", factory=EvalEveryConfig)
    seed: int = _help("seed of everything (tasks, sampling, init)", 0)
    output_dir: str | None = _help("run folder; default: a new folder in runs/", None)
    resume: str | None = _help("a run folder to continue from its last checkpoint", None)
    fork: str | None = _help(
        "a run folder to start a new run from: its step-0 checkpoint (the policy after SFT), "
        "its model, env, reward, sft, seed, LoRA shape and learner dtype; the other learner "
        "keys, rollout and eval come from this command (GRPO variants compared from one "
        "start)", None)
    checkpoint_every: int = _help("write a checkpoint every N steps", 5)
    keep_checkpoints: int = _help("the latest checkpoints kept on disk (step 0, the start "
                                  "fork= uses, is kept as well)", 2)
    progress: bool = _help("show a progress bar", True)


def env_recipe(env_name: str) -> list[str]:
    """The training recipe env ``env_name`` registered (``train=`` at its registration, as
    ``rewards=`` is its reward): ``key=value`` overrides measured to work for it."""
    from gymrl import plugins

    return list(plugins.get("env", env_name).meta.get("train", ()))


def load_train_config(overrides: list[str]) -> tuple[dict[str, Any], list[str]]:
    """``gymrl train``'s config: the defaults, then the env's recipe, then the user's config
    files and overrides (which win over the recipe). Returns (config, the recipe used)."""
    from gymrl.config import load_config, to_container

    recipe = env_recipe(load_config(TrainConfig, overrides).env.name)
    return to_container(load_config(TrainConfig, overrides, preset=recipe)), recipe
