"""One forward pass over a group's shared prompt and its rows' own tokens, without padding.

The plain way to score a group's rows is to run their prompt once, copy its keys and values to
every row and run the rows padded to the longest: every linear layer then multiplies twice
(prompt, rows), the padding is computed and back-propagated like real tokens, and attention
reads G copies of the prompt's keys (and sums G copies of their gradients).

Here the prompt's tokens and every row's real tokens are laid end to end in one sequence, so
each linear layer multiplies once, over real tokens only; the prompt attends causally to
itself, and the rows (gathered into a padded layout for attention alone) to the prompt and
their own tokens (:func:`gymrl.backends.cascade.rows_attention`).

On SmolLM2-135M on 2 cores, one group of 8 x 32 tokens after a 280-token prompt: forward and
backward 2.4 s against 3.1 s for the padded passes; 8 rows of up to 600 tokens after a 300-token
prompt: peak resident memory 14.3 GiB against 17.1.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gymrl.backends import cascade


@dataclass(frozen=True)
class Layout:
    """Where each row's tokens sit: a prompt of ``head`` tokens, then the rows' real tokens
    end to end. Attention takes this in place of a mask.

    Attributes:
        head: tokens of the shared prompt (first in the sequence).
        rows: number of rows.
        width: the longest row's own tokens (after the prompt).
        starts: (rows,) where each row's tokens begin among the rows' tokens.
        gather: (rows * width,) for each padded slot, its token's index among the rows' tokens
            (0 for padding slots, which are masked).
        scatter: (row tokens,) for each row token, its padded slot.
        allowed: (rows, width, width) whether slot i of a row may attend to its slot j: causal,
            and j is a real token.
    """

    head: int
    rows: int
    width: int
    starts: Any
    gather: Any
    scatter: Any
    allowed: Any

    def attend(self, layer: int, query: Any, key: Any, value: Any, scale: float) -> Any:
        """``query`` (1, H, N, D), ``key``/``value`` (1, KV, N, D) over the whole sequence;
        returns (1, N, H, D)."""
        import torch

        p, rows, width = self.head, self.rows, self.width
        q, k, v = query[0], key[0], value[0]
        heads, dim = q.shape[0], q.shape[-1]
        prompt = cascade.prefix_attention(query[:, :, :p], key[:, :, :p], value[:, :, :p],
                                          scale)[0]

        def own(x: Any) -> Any:  # (heads, N, D) -> (rows, heads, width, D), padded
            return x[:, p:].index_select(1, self.gather).view(
                x.shape[0], rows, width, dim).transpose(0, 1)

        out = cascade.rows_attention(own(q), k[:, :p], v[:, :p], own(k), own(v), self.allowed,
                                     scale)
        out = out.transpose(0, 1).reshape(heads, rows * width, dim).index_select(
            1, self.scatter)
        return torch.cat([prompt, out], dim=1).transpose(0, 1)[None]


def supports(lm: Any, ids: Any, attention: Any) -> bool:
    """Whether the joint pass computes exactly what the model's own forward does here: a
    model :mod:`gymrl.backends.cascade` serves, and right-padded rows."""
    return cascade.supports(lm, ids.shape[1]) and bool(
        (attention[:, 1:] <= attention[:, :-1]).all())


def layout(attention: Any, head: int) -> Layout:
    """The :class:`Layout` of right-padded rows (``attention`` (B, T)) after a shared
    ``head``."""
    import torch

    lengths = attention.sum(dim=1) - head
    width = int(lengths.max())
    slot = torch.arange(width, device=attention.device)
    real = slot[None, :] < lengths[:, None]
    starts = torch.cumsum(lengths, 0) - lengths
    gather = torch.where(real, starts[:, None] + slot[None, :], 0).reshape(-1)
    scatter = torch.nonzero(real.reshape(-1)).squeeze(1)
    causal = torch.ones(width, width, dtype=torch.bool, device=attention.device).tril()
    return Layout(head, attention.shape[0], width, starts, gather, scatter,
                  causal[None] & real[:, None, :])


def policy_states(lm: Any, ids: Any, attention: Any, mask: Any, head: int) -> Any:
    """The final hidden state before each policy token (``mask`` 1), in row-major order: the
    states whose vocabulary projection gives the policy tokens' log-probs.

    Args:
        lm: a causal LM that :func:`supports` the batch.
        ids: (B, T) right-padded token ids whose first ``head`` columns every row shares.
        attention: (B, T) 1 for real tokens.
        mask: (B, T) 1 for policy tokens; none in the first ``head`` columns.
        head: shared columns (at least 1).
    """
    import torch

    plan = layout(attention, head)
    real = attention[:, head:].bool()
    tokens = torch.cat([ids[0, :head], ids[:, head:][real]])[None]
    slots = torch.arange(plan.width, device=ids.device).expand(plan.rows, plan.width)
    positions = torch.cat([torch.arange(head, device=ids.device), head + slots[real]])[None]
    hidden = cascade.run_layers(lm, tokens, positions, plan)[0]
    # Row r's column c (after the head) is predicted by its column c - 1: the prompt's last
    # token for c = 0, else the row's own token c - 1.
    row, column = torch.nonzero(mask[:, head:].bool(), as_tuple=True)
    source = torch.where(column == 0, head - 1, head + plan.starts[row] + column - 1)
    return hidden[source]
