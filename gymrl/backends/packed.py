"""Linear layers that multiply through oneDNN copies of their weights (the CPU's fast path).

:func:`pack_linears` gives every ``nn.Linear`` of a model a copy of its weight reordered once
into the blocked layout oneDNN's matmul reads (``torch.ops.mkldnn._reorder_linear_weight``),
multiplied by ``_linear_pointwise`` on dense inputs: the pair torch's own compiler uses for
frozen CPU linears. The math stays in the weights' dtype; only the kernel changes (oneDNN's
instead of MKL's).

A copy is tied to the version counter and storage of the weight it was made from: a layer
whose weight was written in place since (``load_state_dict``, ``copy_``, a foreach or
for-loop optimizer step) packs it again on its next call. Two writers leave the version
counter alone (torch 2.13), and their callers mark the copies stale (:func:`mark_stale`):
fused optimizers (``AdamW(fused=True)``; :func:`repack_after` hooks the optimizer) and writes
through ``.data`` (peft merging a LoRA adapter; ``lora_merged`` marks them). Under autograd
the forward product still goes through the copy and the backward is the plain one
(``grad @ W``, ``grad^T x``): a model that trains packs once per update, and the step's
rollouts and its update's forward passes use the same copies.

Measured on the 2-core build machine with SmolLM2-135M's shapes (fp32):

- decoding, 8 rows: a forward took 43 ms against 67 ms with the plain layers (MKL), and
  ``benchmarks/linear_rows.py`` read the weights at 18.8 GB/s against 8.9;
- training, ~272 rows (a group's completions): a pass through every layer's product took
  363 ms against 472 ms;
- packing all 211 matrices: ~0.11 s warm (the first time in a process up to ~0.3 s).

A plain mkldnn copy (``to_mkldnn``, multiplied by ``mkldnn_linear``) is reordered again on
every call; its products equal these bit for bit at 3 to 277 rows (not at 1 row, where oneDNN
picks another kernel). MKL's own packed GEMM (``mkl._mkl_linear``) was no faster than the
plain layers at either row count.
"""

from __future__ import annotations

import types
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from typing import Any


def pack_linears(model: Any) -> None:
    """Every ``nn.Linear`` of ``model`` multiplies through a oneDNN copy of its weight, made
    now and made again on the first call after the weight changes (CPU only)."""
    import torch

    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.Linear):
                _pack(module)
                module.forward = types.MethodType(_packed_forward, module)


def mark_stale(model: Any) -> None:
    """Each packed layer of ``model`` packs again on its next call: for a write its weight's
    version counter does not see (through ``.data``, as peft merges a LoRA adapter, or by a
    fused optimizer). A model without packed layers is left as it is."""
    for module in model.modules():
        if module.__dict__.get("packed") is not None:
            module.packed = None


def repack_after(optimizer: Any, model: Any) -> Any:
    """:func:`mark_stale` after every step of ``optimizer``. Returns the hook's handle."""
    return optimizer.register_step_post_hook(lambda *_: mark_stale(model))


@contextmanager
def linears_packed(model: Any) -> Iterator[None]:
    """Within the block the linear layers of ``model`` are packed (:func:`pack_linears`); on
    leaving, also on an error, the copies (~540 MB for SmolLM2 in fp32) are dropped and the
    layers multiply as before, a forward set on an instance (a hook) included."""
    import torch

    linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    own = [m.__dict__.get("forward") for m in linears]
    pack_linears(model)
    try:
        yield
    finally:
        for module, forward in zip(linears, own, strict=True):
            module.__dict__.pop("packed", None)
            module.__dict__.pop("forward", None)
            if forward is not None:
                module.forward = forward


def _stamp(weight: Any) -> tuple[int, int]:
    """What changes when a weight changes: its version counter (bumped by every in-place
    write) and its storage (``param.data = ...``)."""
    return weight._version, weight.data_ptr()


def _pack(module: Any) -> None:
    import torch

    weight = module.weight.detach()
    module.packed = (torch.ops.mkldnn._reorder_linear_weight(weight), _stamp(module.weight))


def _packed_forward(self: Any, x: Any) -> Any:
    import torch

    if self.packed is None or self.packed[1] != _stamp(self.weight):
        with torch.no_grad():
            _pack(self)
    packed = self.packed[0]
    bias = self.bias
    if torch.is_grad_enabled() and (self.weight.requires_grad or x.requires_grad or (
            bias is not None and bias.requires_grad)):
        return _autograd_function().apply(x, self.weight, bias, packed)
    return torch.ops.mkldnn._linear_pointwise(
        x, packed, None if bias is None else bias.detach(), "none", [], "")


@cache
def _autograd_function() -> Any:
    """``torch.autograd.Function`` of a packed product (defined on first use: torch is
    imported lazily)."""
    import torch

    class PackedLinear(torch.autograd.Function):
        """``x @ W.T + b`` through the packed copy of ``W``; the backward of a plain linear."""

        @staticmethod
        def forward(ctx: Any, x: Any, weight: Any, bias: Any, packed: Any) -> Any:
            ctx.save_for_backward(x, weight)
            ctx.has_bias = bias is not None
            return torch.ops.mkldnn._linear_pointwise(x, packed, bias, "none", [], "")

        @staticmethod
        def backward(ctx: Any, grad: Any) -> tuple[Any, Any, Any, None]:
            x, weight = ctx.saved_tensors
            flat = grad.reshape(-1, grad.shape[-1])
            grad_x = grad.matmul(weight) if ctx.needs_input_grad[0] else None
            grad_w = flat.t().mm(x.reshape(-1, x.shape[-1])) if ctx.needs_input_grad[1] else None
            grad_b = flat.sum(0) if ctx.has_bias and ctx.needs_input_grad[2] else None
            return grad_x, grad_w, grad_b, None

    return PackedLinear
