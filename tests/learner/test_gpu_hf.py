"""The learner on a CUDA GPU with the hf rollout path (no vLLM): run where a GPU is lent.

``python -m pytest -m gpu tests/learner/test_gpu_hf.py``. Skipped without CUDA; CI has none.
"""

from __future__ import annotations

import pytest
import torch
from test_train import learner_and_sampled_logprobs, tiny_cfg

from gymrl.learner.rollout import reset_group, run_rollouts
from gymrl.learner.train import Trainer, prepare_run

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
@pytest.mark.parametrize("lora", ["true", "false"])
def test_grpo_steps_on_cuda_update_the_model_and_resume_exactly(tiny_chat_model, tmp_path,
                                                                 dtype, lora):
    cfg, run_dir = prepare_run(tiny_cfg(tiny_chat_model, tmp_path, "learner.device=cuda",
                                        f"learner.dtype={dtype}", f"learner.lora={lora}",
                                        "learner.lr=1e-2"))
    trainer = Trainer(cfg, run_dir)
    assert trainer.device.type == "cuda"
    trained = [p for p in trainer.model.parameters() if p.requires_grad]
    frozen = [p for p in trainer.model.parameters() if not p.requires_grad]
    # peft keeps LoRA adapters in float32 over a bf16 base (stable updates); full fine-tuning
    # trains the weights in the dtype asked for
    assert all(p.dtype == (torch.float32 if lora == "true" else getattr(torch, dtype))
               for p in trained)
    assert all(p.dtype == getattr(torch, dtype) for p in frozen)
    before = [p.detach().clone() for p in trained]
    for _ in range(2):
        metrics = trainer.grpo_step()
        assert metrics["tokens/policy"] > 0
        assert metrics["loss/policy"] == metrics["loss/policy"]  # not NaN
    assert any(not torch.equal(p, b) for p, b in zip(trained, before, strict=True))
    trainer.save()
    weights = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}
    fresh = Trainer(cfg, run_dir)
    assert fresh.restore() and fresh.step == 2
    for n, p in fresh.model.named_parameters():
        assert torch.equal(p, weights[n]), n


def test_sampled_logprobs_match_the_learner_on_cuda(tiny_chat_model, tmp_path):
    """What the rollout recorded is what the learner recomputes (fp32 on the GPU)."""
    cfg, run_dir = prepare_run(tiny_cfg(tiny_chat_model, tmp_path, "learner.device=cuda",
                                        "rollout.max_new_tokens=16"))
    trainer = Trainer(cfg, run_dir)
    rollouts = run_rollouts(trainer.backend, reset_group(trainer.train_envs[:2], 7, 0))
    for ours, theirs in learner_and_sampled_logprobs(trainer, rollouts):
        assert torch.allclose(ours, theirs, atol=1e-3)
