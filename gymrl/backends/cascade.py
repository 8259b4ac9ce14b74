"""Cascade attention: rows that share a prompt keep its keys and values once.

A group's G rows share their prompt. Run as a padded batch, every row carries its own copy of
the prompt's keys and values in the KV cache. Here the prompt's are kept once and each row's
own after them: a decoding step scores the prompt's keys in one product for all rows and all
query heads of a key head, and each row's own keys in a small batched product, with one
softmax over both (:func:`attend`); a pass of many queries (a row's prompt, the learner's
update) goes through SDPA with each row viewing the prompt (:func:`rows_attention`).

This module holds what decoding (:class:`CascadeCache`) and the learner's update
(:mod:`gymrl.learner.cascade`) share: which models it can serve, running a model's own decoder
layers with a *layout* in place of the attention mask (registered with transformers'
``AttentionInterface``; each layer's norms, projections, rotary embedding, MLP, LoRA adapters
and packed linears are the model's own), and the attention arithmetic itself.
"""

from __future__ import annotations

from typing import Any

#: The attention implementation name this module registers with transformers.
ATTENTION = "gymrl_cascade"

#: Model types whose ``model`` is embed -> rotary -> decoder layers -> norm, nothing else in
#: between (no embedding scale, no per-layer masks), with attention behind transformers'
#: attention interface.
SUPPORTED = frozenset({"llama", "mistral", "qwen2", "qwen3"})


def supports(lm: Any, length: int) -> bool:
    """Whether running ``lm``'s layers here computes exactly what its own forward does on
    sequences of up to ``length`` tokens."""
    config = lm.config
    inner = getattr(lm, "model", None)
    if config.model_type not in SUPPORTED or inner is None or not all(
            hasattr(inner, name) for name in ("embed_tokens", "rotary_emb", "layers", "norm")):
        return False
    if any(getattr(layer, "gradient_checkpointing", False) for layer in inner.layers):
        # A layer recomputed in the backward would run after the attention is restored.
        return False
    if lm.training and getattr(config, "attention_dropout", 0.0):
        return False
    layer_types = getattr(config, "layer_types", None) or ["full_attention"]
    if any(kind != "full_attention" for kind in layer_types):
        return False
    if getattr(config, "use_sliding_window", False):
        return False
    window = getattr(config, "sliding_window", None)
    return not (config.model_type == "mistral" and window is not None and window < length)


def run_layers(lm: Any, tokens: Any, positions: Any, layout: Any) -> Any:
    """``lm``'s final hidden states for ``tokens`` (B, N) at ``positions`` (B, N), attention
    computed by ``layout.attend(layer_index, query, key, value, scale)``."""
    from transformers import AttentionInterface

    inner = lm.model
    hidden = inner.embed_tokens(tokens)
    rotary = inner.rotary_emb(hidden, positions)
    AttentionInterface.register(ATTENTION, layout_attention)
    before = lm.config._attn_implementation
    lm.config._attn_implementation = ATTENTION
    try:
        for layer in inner.layers:
            hidden = layer(hidden, attention_mask=layout, position_ids=positions,
                           position_embeddings=rotary)
    finally:
        lm.config._attn_implementation = before
    return inner.norm(hidden)


def layout_attention(module: Any, query: Any, key: Any, value: Any, attention_mask: Any,
                     scaling: float | None = None, dropout: float = 0.0,
                     **kwargs: Any) -> tuple[Any, None]:
    """transformers' attention-interface signature: ``query`` (B, H, N, D), ``key`` and
    ``value`` (B, KV, N, D) of the tokens this pass adds; the layout passed as the mask does
    the rest. Returns (B, N, H, D)."""
    scale = query.shape[-1] ** -0.5 if scaling is None else scaling
    return attention_mask.attend(module.layer_idx, query, key, value, scale), None


def attend(query: Any, prefix_key: Any, prefix_value: Any, own_key: Any, own_value: Any,
           allowed: Any, scale: float) -> Any:
    """Cascade attention of rows over a shared prefix and their own keys, as explicit
    products: for few queries a row (decoding), where SDPA's per-call cost dominates.

    Args:
        query: (KV, R, Q, D): for each of KV key heads and R rows, the queries of the query
            heads that key head serves (Q = query heads per key head x positions).
        prefix_key, prefix_value: (KV, P, D), every row's.
        own_key, own_value: (KV, R, M, D): each row's own.
        allowed: (R, Q, M) whether a query may see a key of its row.
        scale: the softmax scale.

    Returns:
        (KV, R, Q, D).
    """
    import torch

    kv_heads, rows, queries, dim = query.shape
    prefix = prefix_key.shape[1]
    on_own = torch.matmul(query, own_key.transpose(-1, -2)).masked_fill(~allowed, float("-inf"))
    # Against the prefix: one product for every row and query of a key head.
    on_prefix = torch.bmm(query.reshape(kv_heads, -1, dim), prefix_key.transpose(1, 2))
    weights = torch.softmax(
        torch.cat([on_prefix.view(kv_heads, rows, queries, prefix), on_own], dim=-1) * scale,
        dim=-1)
    out = torch.bmm(weights[..., :prefix].reshape(kv_heads, -1, prefix), prefix_value)
    return out.view(kv_heads, rows, queries, dim) + torch.matmul(weights[..., prefix:],
                                                                 own_value)


def rows_attention(query: Any, prefix_key: Any, prefix_value: Any, own_key: Any,
                   own_value: Any, allowed: Any, scale: float) -> Any:
    """Attention of rows over a shared prefix and their own keys through SDPA: for passes of
    many queries (a row's prompt, the update), where SDPA's fused kernel keeps no
    (rows x queries x keys) weights for the backward (explicit products kept ~350 MB a layer
    for 8 rows of 600 tokens) and runs faster. Each row gets a view of the prefix (SDPA
    copies it with the row's own keys, (R, KV, P + M, D) a layer: small beside the weights).

    Args:
        query: (R, H, L, D).
        prefix_key, prefix_value: (KV, P, D), every row's.
        own_key, own_value: (R, KV, M, D).
        allowed: (R, L, M) whether a query may see a key of its row.
        scale: the softmax scale.

    Returns:
        (R, H, L, D).
    """
    import torch
    import torch.nn.functional as F

    rows, _, length, _ = query.shape
    prefix = prefix_key.shape[1]
    key = torch.cat([prefix_key.expand(rows, *prefix_key.shape), own_key], dim=2)
    value = torch.cat([prefix_value.expand(rows, *prefix_value.shape), own_value], dim=2)
    mask = torch.cat([allowed.new_ones(rows, length, prefix), allowed], dim=2)[:, None]
    return F.scaled_dot_product_attention(query, key, value, attn_mask=mask, scale=scale,
                                          enable_gqa=query.shape[1] != key.shape[1])


def prefix_attention(query: Any, key: Any, value: Any, scale: float) -> Any:
    """Causal attention of one row over itself: (1, H, P, D) queries, (1, KV, P, D) keys and
    values; returns (1, H, P, D)."""
    import torch.nn.functional as F

    return F.scaled_dot_product_attention(query, key, value, is_causal=True, scale=scale,
                                          enable_gqa=query.shape[1] != key.shape[1])


class CascadeCache:
    """A decoding KV cache that keeps the rows' shared prompt once and each row's own tokens
    in a growing buffer; it runs the model itself (:meth:`logits`).

    It offers what ``decode`` and the backend ask of transformers' caches:
    ``get_seq_length``, ``batch_repeat_interleave`` (after the prompt; the rows are those of
    the first pass after it), ``batch_select_indices`` (rows leaving), and :meth:`row` (a
    row's keys and values, for ``RowCaches``).
    """

    #: Columns added past what a buffer needs whenever it grows.
    SPARE = 64

    def __init__(self, lm: Any) -> None:
        self.lm = lm
        layers = len(lm.model.layers)
        self.prefix: list[tuple[Any, Any] | None] = [None] * layers
        self.own: list[tuple[Any, Any] | None] = [None] * layers
        self.filled = 0  # own columns written by every layer
        self.allowed: Any = None  # (R, n, filled + n) for the pass under way
        self._prefilling = False

    def get_seq_length(self, layer: int = 0) -> int:
        prefix = self.prefix[0][0].shape[1] if self.prefix[0] is not None else 0
        return prefix + self.filled

    def batch_repeat_interleave(self, repeats: int) -> None:
        if self.filled:
            raise ValueError("CascadeCache: rows can only be repeated before their own tokens")

    def batch_select_indices(self, indices: Any) -> None:
        self.own = [None if kv is None else (kv[0][:, indices], kv[1][:, indices])
                    for kv in self.own]

    def row(self, index: int, columns: Any) -> list[tuple[Any, Any]]:
        """Row ``index``'s keys and values per layer, (KV, n, D) each, at the ``columns`` of
        its attention mask (prefix columns first) that are set."""
        import torch

        out = []
        for prefix, own in zip(self.prefix, self.own, strict=True):
            parts_k = [prefix[0]] if prefix is not None else []
            parts_v = [prefix[1]] if prefix is not None else []
            if own is not None:
                parts_k.append(own[0][:, index, :self.filled])
                parts_v.append(own[1][:, index, :self.filled])
            out.append((torch.cat(parts_k, dim=1)[:, columns],
                        torch.cat(parts_v, dim=1)[:, columns]))
        return out

    def prefill(self, input_ids: Any) -> None:
        """Encode the rows' shared prompt, (1, P) ids, as the prefix every row reads."""
        import torch

        if self.filled or self.prefix[0] is not None:
            raise ValueError("CascadeCache: the shared prompt comes first, once")
        positions = torch.arange(input_ids.shape[1], device=input_ids.device)[None]
        self._prefilling = True
        try:
            run_layers(self.lm, input_ids, positions, self)
        finally:
            self._prefilling = False

    def logits(self, input_ids: Any, attention: Any, positions: Any, last_only: bool) -> Any:
        """The model's logits for ``input_ids`` (R, n) after what is cached; ``attention``
        (R, prefix + own + n) marks each row's real columns (padding may sit among its own).
        """
        import torch

        n, device = input_ids.shape[1], input_ids.device
        own = attention[:, attention.shape[1] - self.filled - n:].bool()
        columns = torch.arange(self.filled + n, device=device)[None, :]
        queries = self.filled + torch.arange(n, device=device)[:, None]
        # A padding query sees at least itself: a row of -inf would make NaN.
        self.allowed = ((columns <= queries)[None] & own[:, None, :]) | (columns == queries)[None]
        hidden = run_layers(self.lm, input_ids, positions, self)
        self.filled += n
        return self.lm.lm_head(hidden[:, -1:] if last_only else hidden)

    def attend(self, layer: int, query: Any, key: Any, value: Any, scale: float) -> Any:

        if self._prefilling:
            self.prefix[layer] = (key[0], value[0])
            return prefix_attention(query, key, value, scale).transpose(1, 2)
        rows, heads, n, dim = query.shape
        kv_heads = key.shape[1]
        group = heads // kv_heads
        own_key, own_value = self._append(layer, key, value)
        prefix = self.prefix[layer]
        if prefix is None:
            prefix = (key.new_empty(kv_heads, 0, dim), value.new_empty(kv_heads, 0, dim))
        if n > 1:  # the rows' own prompts: many queries
            own = rows_attention(query, prefix[0], prefix[1], own_key.transpose(0, 1),
                                 own_value.transpose(0, 1), self.allowed, scale)
            return own.transpose(1, 2)
        # One query a row (decoding): explicit products, one of them over the prefix for
        # every row and query head at once.
        # (R, H, 1, D) -> (KV, R, G, D): query head h is served by key head h // G.
        q = query.reshape(rows, kv_heads, group, dim).transpose(0, 1)
        if self.allowed.shape[1] != group:
            self.allowed = self.allowed.expand(rows, group, -1)  # the same for each head
        out = attend(q, prefix[0], prefix[1], own_key, own_value, self.allowed, scale)
        # (KV, R, G, D) -> (R, 1, H, D)
        return out.transpose(0, 1).reshape(rows, 1, heads, dim)

    def _append(self, layer: int, key: Any, value: Any) -> tuple[Any, Any]:
        """Write the pass's keys and values, (R, KV, n, D), after the layer's own columns;
        return the filled part, (KV, R, filled + n, D) (the buffers' layout: a key head's rows
        together)."""
        rows, kv_heads, n, dim = key.shape
        need = self.filled + n
        buffers = self.own[layer]
        if buffers is None or buffers[0].shape[2] < need:
            k = key.new_empty(kv_heads, rows, need + self.SPARE, dim)
            v = value.new_empty(kv_heads, rows, need + self.SPARE, value.shape[-1])
            if buffers is not None and self.filled:
                k[:, :, :self.filled] = buffers[0][:, :, :self.filled]
                v[:, :, :self.filled] = buffers[1][:, :, :self.filled]
            buffers = self.own[layer] = (k, v)
        buffers[0][:, :, self.filled:need] = key.transpose(0, 1)
        buffers[1][:, :, self.filled:need] = value.transpose(0, 1)
        return buffers[0][:, :, :need], buffers[1][:, :, :need]
