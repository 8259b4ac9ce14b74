"""``vllm:TARGET``: rollouts on a GPU with vLLM, weights synced from the learner after updates.

The optional extra ``pip install gymrl[vllm]`` brings vLLM; nothing else in gymrl needs it, and
tests run without it (the GPU test is marked ``gpu``). vLLM is imported inside the methods.

The learner trains a transformers model and, after each optimizer step, pushes its weights into
the vLLM engine with :meth:`VLLMBackend.load_weights` (LoRA adapters are merged first), so every
rollout samples from the current policy. The engine runs in this process
(``VLLM_ENABLE_V1_MULTIPROCESSING=0``), so the weights are handed over as tensors, not copied
through a pipe.
"""

from __future__ import annotations

import os
from typing import Any

from gymrl.backends.base import Backend, Completion, Request, chat_prompt_ids, check_sampling
from gymrl.errors import BackendError, ConfigError
from gymrl.learner.model import merged_weights

_DTYPES = ("bfloat16", "float16", "float32", "auto")


class VLLMBackend(Backend):
    """Generates with a vLLM engine on a CUDA GPU.

    Completion fields match :class:`gymrl.backends.hf.HFBackend`: ``text`` cut after the stop
    string it hit (the stop string included), ``token_ids`` the generated ids (the whole last
    token kept), ``logprobs`` of the chosen tokens under the distribution sampled from
    (vLLM's ``processed_logprobs``: after temperature and top-p), ``finish_reason``.

    Args:
        target: a local model directory (or a Hugging Face id, when the hub is reachable).
        max_new_tokens, temperature, top_p, seed: as for the ``hf`` backend.
        batch_size: requests sent to the engine per call (vLLM schedules them itself).
        dtype: the engine's weights (``bfloat16`` by default on a GPU).
        gpu_memory_utilization: share of GPU memory vLLM may take (the learner needs the rest).
        max_model_len: longest prompt + completion, in tokens.
        enable_prefix_caching: reuse the KV cache of shared prompt heads (a group's prompt, the
            earlier turns of an episode).

    Raises:
        BackendError: vLLM is not installed, there is no CUDA GPU, or the model cannot load.
    """

    def __init__(
        self,
        target: str,
        *,
        max_new_tokens: int = 256,
        temperature: float = 1.0,
        top_p: float = 1.0,
        batch_size: int = 256,
        dtype: str = "bfloat16",
        seed: int = 0,
        gpu_memory_utilization: float = 0.3,
        max_model_len: int = 4096,
        enable_prefix_caching: bool = True,
    ) -> None:
        if not target:
            raise ConfigError("vllm backend needs a model path, e.g. vllm:./model")
        check_sampling(max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p,
                       batch_size=batch_size)
        if dtype not in _DTYPES:
            raise ConfigError(f"unknown dtype {dtype!r}; allowed: {', '.join(_DTYPES)}")
        if not 0 < gpu_memory_utilization <= 1:
            raise ConfigError("gpu_memory_utilization must be in (0, 1], got "
                              f"{gpu_memory_utilization}")
        try:
            import vllm
        except ImportError as e:
            raise BackendError("the vllm backend needs vLLM and a CUDA GPU: pip install "
                               "'gymrl[vllm]' (or use the hf backend on the CPU)") from e
        import torch

        if not torch.cuda.is_available():
            raise BackendError("the vllm backend needs a CUDA GPU and none is visible; use the "
                               "hf backend on the CPU")
        from transformers import AutoTokenizer

        self.name = f"vllm:{target}"
        self.target = target
        self.max_new_tokens = max_new_tokens
        self.temperature = temperature
        self.top_p = top_p
        self.batch_size = batch_size
        self.seed = seed
        self._calls = 0
        os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")  # weights stay in-process
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(target, padding_side="left")
            self.llm = vllm.LLM(
                model=target, dtype=dtype, seed=seed,
                gpu_memory_utilization=gpu_memory_utilization, max_model_len=max_model_len,
                enable_prefix_caching=enable_prefix_caching,
                logprobs_mode="processed_logprobs")
        except Exception as e:
            raise BackendError(f"cannot start vLLM on {target!r}: {e}") from e
        eos = self.tokenizer.eos_token_id
        self._eos_ids = {eos} if eos is not None else set()

    @property
    def eos_ids(self) -> set[int]:
        return self._eos_ids

    def sampling_state(self) -> int:
        """Where the per-call seed stream stands (see ``base.sampling_stream_kept``)."""
        return self._calls

    def set_sampling_state(self, state: int) -> None:
        self._calls = state

    def generate(self, requests: list[Request]) -> list[Completion]:
        return self.generate_ids(*chat_prompt_ids(self.tokenizer, requests))

    def generate_ids(self, prompts: list[list[int]], stops: list[tuple[str, ...]], *,
                     keys: list[Any] | None = None) -> list[Completion]:
        """Continue token-id prompts; cut each at its own stop strings (kept in the text).

        ``keys`` (the conversation each row continues) is accepted for the hf backend's
        interface and not needed: vLLM's prefix caching finds an earlier turn's KV by itself.
        """
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt

        self._calls += 1
        params = [SamplingParams(
            n=1, temperature=self.temperature, top_p=self.top_p, top_k=0,
            max_tokens=self.max_new_tokens, stop=list(stop) or None,
            include_stop_str_in_output=True, logprobs=0,
            # A fresh, reproducible stream per call and row.
            seed=(self.seed * 1_000_003 + self._calls) * 4099 + i)
            for i, stop in enumerate(stops)]
        outputs = self.llm.generate([TokensPrompt(prompt_token_ids=list(p)) for p in prompts],
                                    params, use_tqdm=False)
        completions = []
        for prompt, out in zip(prompts, outputs, strict=True):
            choice = out.outputs[0]
            token_ids = list(choice.token_ids)
            logprobs = [step[t].logprob for step, t in zip(choice.logprobs or [], token_ids,
                                                           strict=False)]
            completions.append(Completion(
                text=choice.text, prompt_tokens=len(prompt), completion_tokens=len(token_ids),
                token_ids=token_ids, logprobs=logprobs,
                finish_reason="length" if choice.finish_reason == "length" else "stop"))
        return completions

    def load_weights(self, model: Any) -> None:
        """Push a transformers model's current weights into the engine (LoRA merged)."""
        weights = list(merged_weights(model))

        def load(engine_model: Any) -> None:
            engine_model.load_weights(weights)

        self.llm.apply_model(load)
        self.llm.reset_prefix_cache()  # cached KV was computed with the old weights

    def close(self) -> None:
        self.llm = None
