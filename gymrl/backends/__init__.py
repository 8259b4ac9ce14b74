"""LLM backends: ``scripted:`` baselines, ``hf:`` local transformers models, ``openai:`` HTTP."""

from gymrl.backends.base import Backend, Completion, Request

__all__ = ["Backend", "Completion", "Request"]
