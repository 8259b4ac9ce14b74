"""The core's backends, registered through the ``gymrl`` entry-point group like any plugin.

The backend modules import torch, transformers and openai inside functions, so registering
them here costs nothing until a backend is built.
"""

from __future__ import annotations

from gymrl.backends.hf import HFBackend
from gymrl.backends.openai_compat import OpenAIBackend
from gymrl.backends.scripted import ScriptedBackend
from gymrl.backends.vllm import VLLMBackend
from gymrl.hookspecs import hookimpl


@hookimpl
def register_backends(register):
    register("scripted", ScriptedBackend,
             description="Scripted baselines of the env (oracle, cheapest, strongest, random)")
    register("hf", HFBackend,
             description="A local transformers model: chat template, batched generation")
    register("vllm", VLLMBackend,
             description="vLLM on a CUDA GPU (extra gymrl[vllm]); the learner syncs weights")
    register("openai", OpenAIBackend,
             description="Any OpenAI-compatible chat-completions endpoint")
