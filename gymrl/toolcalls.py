"""Comparing tool calls with gold calls: exact (AST-style) match and ToolRL's graded score.

A call is ``{"name": str, "parameters": dict}``. Values compare after normalisation: numbers by
value (``5 == 5.0``), strings case- and whitespace-insensitively, and arithmetic expressions
(parameter ``expression``) with all spaces removed and ``**`` written ``^``.
"""

from __future__ import annotations

import itertools
import re
from typing import Any

_SPACES = re.compile(r"\s+")


def normalize_value(value: Any, key: str = "") -> Any:
    """A canonical form of a parameter value for comparison."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        if key == "expression":
            return _SPACES.sub("", value).replace("**", "^")
        text = _SPACES.sub(" ", value.strip().lower())
        try:
            return float(text)  # "12" and 12 are the same argument
        except ValueError:
            return text
    if isinstance(value, list):
        return [normalize_value(v, key) for v in value]
    if isinstance(value, dict):
        return {k: normalize_value(v, k) for k, v in value.items()}
    return value


def same_call(pred: dict[str, Any], gold: dict[str, Any]) -> bool:
    """Name and every parameter equal (after normalisation), no missing or extra parameter."""
    if pred.get("name") != gold.get("name"):
        return False
    p, g = pred.get("parameters") or {}, gold.get("parameters") or {}
    return set(p) == set(g) and all(normalize_value(p[k], k) == normalize_value(g[k], k)
                                    for k in g)


def calls_match(pred: list[dict[str, Any]], gold: list[dict[str, Any]]) -> bool:
    """The two lists hold the same calls, in any order (each gold call used once)."""
    if len(pred) != len(gold):
        return False
    remaining = list(gold)
    for call in pred:
        hit = next((i for i, g in enumerate(remaining) if same_call(call, g)), None)
        if hit is None:
            return False
        remaining.pop(hit)
    return True


def _pair_score(pred: dict[str, Any], gold: dict[str, Any]) -> tuple[float, float]:
    """(parameter-name Jaccard, matching parameter values) of one predicted/gold pair."""
    p, g = pred.get("parameters") or {}, gold.get("parameters") or {}
    keys = set(p) | set(g)
    names = len(set(p) & set(g)) / len(keys) if keys else 1.0
    values = sum(1.0 for k in g if k in p and normalize_value(p[k], k) == normalize_value(g[k], k))
    return names, values


def toolrl_correctness(pred: list[dict[str, Any]], gold: list[dict[str, Any]],
                       max_pairs: int = 4) -> float:
    """ToolRL's fine-grained tool reward, in [-3, 3].

    ``r_name`` is the Jaccard overlap of the called and gold tool names; each gold call is paired
    with a predicted call of the same name (the pairing that scores best) and adds its
    parameter-name Jaccard (``r_param``, at most 1 per gold call) and the number of its values
    matched (``r_value``, at most its parameter count). With ``S_max = 1 + |gold| + sum of gold
    parameter counts``, the reward is ``6 (r_name + r_param + r_value) / S_max - 3``: 3 for the
    gold calls exactly, -3 for nothing right. No gold call and no call made is a perfect 3
    (irrelevance handled correctly); calls where none were wanted score -3.
    """
    if not gold:
        return 3.0 if not pred else -3.0
    pred_names, gold_names = {c.get("name") for c in pred}, {c.get("name") for c in gold}
    union = pred_names | gold_names
    r_name = len(pred_names & gold_names) / len(union) if union else 0.0
    s_max = 1 + len(gold) + sum(len(g.get("parameters") or {}) for g in gold)
    # Only same-name pairs score, so pair within each name: every pairing of that name's gold
    # calls with distinct predicted calls (or none) is tried, and the best counts.
    best = 0.0
    for name in gold_names:
        golds = [g for g in gold if g.get("name") == name][:max_pairs]
        preds = [c for c in pred if c.get("name") == name][:max_pairs]
        slots = list(range(len(preds))) + [None] * len(golds)
        best += max((sum(sum(_pair_score(preds[i], g)) for g, i in zip(golds, perm, strict=True)
                         if i is not None)
                     for perm in set(itertools.permutations(slots, len(golds)))), default=0.0)
    return 6 * (r_name + best) / s_max - 3
