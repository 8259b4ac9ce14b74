"""The GPU rollout path: what runs on the CPU here, and a ``gpu`` test for a machine with one."""

from __future__ import annotations

import copy
import importlib.util
import warnings

import pytest
import torch
from test_train import _rows, _trained, learner_and_sampled_logprobs, tiny_cfg

from gymrl import BackendError, ConfigError
from gymrl.learner import checkpoint
from gymrl.learner.model import merged_weights
from gymrl.learner.train import Trainer, cpu_has_bf16_matmul, prepare_run, train

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


@pytest.mark.parametrize(("extra", "message"), [
    (["rollout.hf_dtype=int8"], r"rollout.hf_dtype 'int8'; allowed: null .* bfloat16, float16"),
    (["rollout.hf_dtype=bfloat16", "rollout.backend=vllm"], r"is for rollout.backend=hf"),
    (["rollout.hf_pack=true", "rollout.backend=vllm"], r"hf_pack=true is for rollout.backend=hf"),
    (["rollout.hf_pack=true", "rollout.hf_dtype=float32", "learner.device=cuda"],
     r"hf_pack=true is for the CPU"),
])
def test_a_bad_rollout_copy_dtype_is_refused(tiny_chat_model, tmp_path, extra, message):
    with pytest.raises(ConfigError, match=message):
        prepare_run(tiny_cfg(tiny_chat_model, tmp_path, *extra))


def test_a_float32_rollout_copy_trains_exactly_as_the_learners_own_model(tiny_chat_model,
                                                                         tmp_path):
    """The copy path (load_weights after every update, LoRA merged, its own sampling stream)
    changes nothing but the weights' dtype: in float32 the run is the shared-model run."""
    runs = {"own": (), "copy": ("rollout.hf_dtype=float32",)}
    for name, extra in runs.items():
        train(tiny_cfg(tiny_chat_model, tmp_path / name, "learner.steps=3", "learner.lr=5e-3",
                       "sft.steps=2", "sft.demos=4", "sft.batch_size=2", *extra))
    own, copy_ = (_trained(_rows(tmp_path / name)) for name in runs)
    assert own == copy_ and len(own) == 3
    a, b = (torch.load(checkpoint.latest(tmp_path / name) / "weights.pt", weights_only=True)
            for name in runs)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_a_bf16_rollout_copy_follows_the_learner_and_evaluations_use_the_learner(
        tiny_chat_model, tmp_path):
    cfg, run_dir = prepare_run(tiny_cfg(tiny_chat_model, tmp_path, "learner.lr=5e-2",
                                        "rollout.hf_dtype=bfloat16"))
    trainer = Trainer(cfg, run_dir)
    assert trainer.backend is not trainer.learner_backend
    assert trainer.backend.model.dtype == torch.bfloat16
    assert trainer.eval_backend is trainer.learner_backend
    metrics = trainer.grpo_step()
    assert metrics["groups/flat"] < 2  # an update happened
    copy_weights = dict(trainer.backend.model.named_parameters())
    for name, weight in merged_weights(trainer.model):
        assert torch.equal(copy_weights[name], weight.to(torch.bfloat16)), name
    # The copy samples what it is given: its own log-probs of its tokens, near the learner's.
    from gymrl.learner.rollout import reset_group, run_rollouts

    rollouts = run_rollouts(trainer.backend, reset_group(trainer.train_envs[:2], task_seed=7,
                                                         group=0))
    for ours, sampled in learner_and_sampled_logprobs(trainer, rollouts):
        assert torch.allclose(ours, sampled, atol=0.1)


def test_a_bf16_rollout_copy_on_a_cpu_without_bf16_matmuls_warns(tiny_chat_model, tmp_path,
                                                                   monkeypatch):
    for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"):
        monkeypatch.setattr(torch.cpu, name, lambda: False)
    cfg, run_dir = prepare_run(tiny_cfg(tiny_chat_model, tmp_path, "rollout.hf_dtype=bfloat16"))
    with pytest.warns(UserWarning, match="without avx512_bf16 or AMX.*leave rollout.hf_dtype"):
        Trainer(cfg, run_dir)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: True)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        Trainer(cfg, run_dir)


def test_a_packed_float32_rollout_copy_samples_as_the_learner_would(tiny_chat_model,
                                                                    tmp_path):
    cfg, run_dir = prepare_run(tiny_cfg(tiny_chat_model, tmp_path, "learner.lr=5e-2",
                                        "rollout.hf_dtype=float32", "rollout.hf_pack=true"))
    trainer = Trainer(cfg, run_dir)
    trainer.grpo_step()  # an update: the copy is synced and packed again
    from gymrl.learner.rollout import reset_group, run_rollouts

    rollouts = run_rollouts(trainer.backend, reset_group(trainer.train_envs[:2], task_seed=7,
                                                         group=0))
    for ours, sampled in learner_and_sampled_logprobs(trainer, rollouts):
        assert torch.allclose(ours, sampled, atol=1e-4)


@pytest.mark.parametrize(("extra", "packed"), [
    ((), True), (("rollout.hf_pack=false",), False),
    (("learner.lora=false", "learner.optim=adamw_torch_fused"), True),
    (("learner.dtype=bfloat16",), cpu_has_bf16_matmul())])
def test_the_learners_own_model_multiplies_packed_on_the_cpu(
        tiny_chat_model, tmp_path, monkeypatch, extra, packed):
    """rollout.hf_pack=null (the default): the learner's model multiplies through packed
    weights (float32; bfloat16 where the CPU multiplies it natively) in the rollouts and
    evaluations it plays and in its update, and after the update every layer multiplies by
    its new weights (a fused AdamW included, which leaves the version counters alone); what
    it samples is what the learner scores."""
    from gymrl.learner import train as train_module

    cfg, run_dir = prepare_run(tiny_cfg(tiny_chat_model, tmp_path, "learner.lr=5e-2", *extra))
    trainer = Trainer(cfg, run_dir)
    linears = [m for m in trainer.model.modules() if isinstance(m, torch.nn.Linear)]
    seen = []
    real = train_module.run_rollouts

    def watched(backend, rollouts):
        seen.append(all("packed" in m.__dict__ for m in linears))
        return real(backend, rollouts)

    in_update: set[str] = set()
    scored = train_module.token_logprobs

    def profiled(*args, **kwargs):  # the update's forward passes (with autograd)
        with torch.profiler.profile() as profile:
            out = scored(*args, **kwargs)
        in_update.update(event.key for event in profile.key_averages())
        return out

    monkeypatch.setattr(train_module, "run_rollouts", watched)
    monkeypatch.setattr(train_module, "token_logprobs", profiled)
    trainer.evaluate()
    before = [m.weight.detach().clone() for m in linears]
    trainer.grpo_step()
    assert seen == [packed, packed]
    assert ("mkldnn::_linear_pointwise" in in_update) == packed
    assert all(("packed" in m.__dict__) == packed for m in linears)
    assert any(not torch.equal(m.weight, w) for m, w in zip(linears, before, strict=True))
    with torch.no_grad():
        for m in linears:
            x = torch.randn(3, m.in_features, dtype=m.weight.dtype)
            assert torch.allclose(m(x), torch.nn.functional.linear(x, m.weight, m.bias),
                                  rtol=1e-2 if "bfloat16" in str(extra) else 1e-5, atol=1e-5)
    if packed and "learner.dtype=bfloat16" not in extra:  # bf16 scores differ by its rounding
        from gymrl.learner.rollout import reset_group

        rollouts = reset_group(trainer.train_envs[:2], task_seed=7, group=0)
        trainer.play(rollouts)
        for ours, sampled in learner_and_sampled_logprobs(trainer, rollouts):
            assert torch.allclose(ours, sampled, atol=1e-4)


def test_an_evaluation_is_the_same_with_a_bf16_rollout_copy(tiny_chat_model, tmp_path):
    """Evaluations use the learner's model, so a run with the copy measures its start as a run
    without it does (and a fork can reuse the start's evaluation)."""
    rows = {}
    for name, extra in {"own": (), "copy": ("rollout.hf_dtype=bfloat16",)}.items():
        cfg, run_dir = prepare_run(tiny_cfg(tiny_chat_model, tmp_path / name, *extra))
        rows[name] = Trainer(cfg, run_dir).evaluate()
    assert rows["own"] == rows["copy"]


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


def test_a_rollout_copy_refuses_weights_of_another_architecture(tiny_chat_model):
    from transformers import AutoConfig, AutoModelForCausalLM

    from gymrl.backends.hf import HFBackend

    backend = HFBackend(str(tiny_chat_model), dtype="bfloat16")
    config = AutoConfig.from_pretrained(tiny_chat_model)
    config.num_hidden_layers = 3
    with pytest.raises(BackendError, match="another architecture.*model.layers.2"):
        backend.load_weights(AutoModelForCausalLM.from_config(config))
