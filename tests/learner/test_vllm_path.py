"""The GPU rollout path: what runs on the CPU here, and a ``gpu`` test for a machine with one."""

from __future__ import annotations

import copy
import importlib.util

import pytest
import torch
from test_train import learner_and_sampled_logprobs, tiny_cfg

from gymrl import BackendError, ConfigError
from gymrl.backends.vllm import merged_weights
from gymrl.learner.train import Trainer, prepare_run

HAS_GPU = torch.cuda.is_available() and importlib.util.find_spec("vllm") is not None


def test_merged_lora_weights_equal_merge_and_unload(tiny_chat_model):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(tiny_chat_model)
    model = get_peft_model(base, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj",
                                                                              "down_proj"]))
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_()  # a non-zero adapter: merging must change the weights
    merged = dict(merged_weights(model))
    reference = dict(copy.deepcopy(model).merge_and_unload().named_parameters())
    assert set(merged) == set(reference)
    for name, tensor in reference.items():
        assert torch.allclose(merged[name], tensor, atol=1e-6), name
    q_proj = model.get_base_model().model.layers[0].self_attn.q_proj
    assert not torch.equal(merged["model.layers.0.self_attn.q_proj.weight"],
                           q_proj.base_layer.weight)  # the adapter is in the merged weight


def test_plain_model_weights_pass_through(tiny_chat_model):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_chat_model)
    assert {n for n, _ in merged_weights(model)} == {n for n, _ in model.named_parameters()}


def test_unknown_rollout_backend_is_refused(tiny_chat_model, tmp_path):
    with pytest.raises(ConfigError, match="rollout.backend 'tgi'; allowed: hf, vllm"):
        prepare_run(tiny_cfg(tiny_chat_model, tmp_path, "rollout.backend=tgi"))


@pytest.mark.skipif(HAS_GPU, reason="checks the error raised where vLLM or a GPU is missing")
def test_vllm_rollouts_without_vllm_or_gpu_fail_with_the_fix(tiny_chat_model, tmp_path):
    cfg, run_dir = prepare_run(tiny_cfg(tiny_chat_model, tmp_path, "rollout.backend=vllm"))
    with pytest.raises(BackendError, match="vllm backend needs"):
        Trainer(cfg, run_dir)


@pytest.mark.gpu
@pytest.mark.skipif(not HAS_GPU, reason="needs a CUDA GPU and vLLM (pip install 'gymrl[vllm]')")
def test_vllm_rollouts_follow_the_learner_after_each_update(tmp_path):
    """SmolLM2 on the GPU: bf16 learner, vLLM rollouts; after an update vLLM samples from the
    updated weights (its log-probs of its own tokens match the learner's, recomputed)."""
    from gymrl.config import load_config, to_container
    from gymrl.learner.config import TrainConfig

    cfg = to_container(load_config(TrainConfig, [
        "model=smollm2", "env=router", "reward=cost+outcome", "rollout.backend=vllm",
        "learner.device=cuda", "learner.dtype=bfloat16", "learner.lora=false",
        "learner.lr=1e-4", "learner.groups=2", "learner.group_size=8", "sft.steps=0",
        "rollout.max_new_tokens=48", f"output_dir={tmp_path}", "progress=false"]))
    cfg, run_dir = prepare_run(cfg)
    trainer = Trainer(cfg, run_dir)
    for _ in range(2):
        metrics = trainer.grpo_step()
        assert metrics["tokens/policy"] > 0
    envs = trainer.train_envs[:4]
    from gymrl.learner.rollout import reset_group, run_rollouts

    rollouts = run_rollouts(trainer.backend, reset_group(envs, task_seed=99, group=0))
    for ours, theirs in learner_and_sampled_logprobs(trainer, rollouts):
        assert (ours - theirs).abs().mean() < 0.1  # bf16 on both sides
