"""Tiny randomly initialised causal LMs of the architectures gymrl's cascade attention serves."""

from __future__ import annotations

from typing import Any

TINY = {"vocab_size": 300, "hidden_size": 64, "intermediate_size": 96,
        "num_hidden_layers": 2, "num_attention_heads": 4, "max_position_embeddings": 256}

#: name -> config keyword arguments beyond :data:`TINY`.
ARCHITECTURES = {
    "llama": ("LlamaConfig", {"num_key_value_heads": 2}),  # 2 query heads per key head
    "qwen2": ("Qwen2Config", {"num_key_value_heads": 1}),  # biases on q/k/v
    "qwen3": ("Qwen3Config", {"num_key_value_heads": 2, "head_dim": 24}),  # q/k norms
}


def tiny_causal_lm(kind: str, **overrides: Any) -> Any:
    """A seeded 2-layer model of architecture ``kind`` (a key of :data:`ARCHITECTURES`)."""
    import torch
    import transformers

    config_class, extra = ARCHITECTURES[kind]
    torch.manual_seed(0)
    config = getattr(transformers, config_class)(**TINY | extra | overrides)
    return transformers.AutoModelForCausalLM.from_config(config)
