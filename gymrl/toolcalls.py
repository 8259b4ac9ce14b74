"""Comparing tool calls with gold calls: exact (AST-style) match and ToolRL's graded score.

A call is ``{"name": str, "parameters": dict}``. Values compare after normalisation: numbers by
value (``5 == 5.0``), strings case- and whitespace-insensitively, and arithmetic expressions
(parameter ``expression``) with all spaces removed and ``**`` written ``^``.

A gold call may carry two optional fields for answers with several right values (BFCL's
possible answers); without them it is matched exactly as written:

- ``"acceptable": {param: [value, ...]}``: every value accepted for ``param`` (a parameter listed
  here need not be in ``parameters``);
- ``"optional": [param, ...]``: parameters that may be left out (if given, their value must
  still be acceptable).

``parameters`` stays one concrete right call (what a scripted oracle writes).
"""

from __future__ import annotations

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


def gold_parameters(gold: dict[str, Any]) -> tuple[set[str], set[str]]:
    """(every parameter the gold call knows, the ones that may be left out)."""
    keys = set(gold.get("parameters") or {}) | set(gold.get("acceptable") or {})
    return keys, keys & set(gold.get("optional") or ())


def value_matches(gold: dict[str, Any], key: str, value: Any) -> bool:
    """Whether ``value`` is a right value of the gold call's parameter ``key``."""
    acceptable = gold.get("acceptable") or {}
    options = acceptable[key] if key in acceptable else [(gold.get("parameters") or {})[key]]
    value = normalize_value(value, key)
    return any(value == normalize_value(option, key) for option in options)


def same_call(pred: dict[str, Any], gold: dict[str, Any]) -> bool:
    """Same name; every parameter right (after normalisation); none missing unless optional;
    none extra."""
    if pred.get("name") != gold.get("name"):
        return False
    p = pred.get("parameters") or {}
    keys, optional = gold_parameters(gold)
    return (set(p) <= keys and keys - optional <= set(p)
            and all(value_matches(gold, k, p[k]) for k in p))


def calls_match(pred: list[dict[str, Any]], gold: list[dict[str, Any]]) -> bool:
    """The two lists hold the same calls, in any order (each gold call used once).

    A call may fit several gold calls (any-of values, optional parameters), so first-fit could
    pair it wrongly: the pairing is an exact maximum matching.
    """
    if len(pred) != len(gold):
        return False
    if not gold:
        return True
    fits = [[1.0 if same_call(c, g) else 0.0 for g in gold] for c in pred]
    return _best_assignment(fits) == len(gold)


def _pair_score(pred: dict[str, Any], gold: dict[str, Any]) -> float:
    """Parameter-name Jaccard plus matching parameter values of one predicted/gold pair.

    An optional parameter left out counts as neither a wanted name nor a wrong value: it adds
    one matched value, so leaving it out and giving it rightly score the same.
    """
    p = pred.get("parameters") or {}
    keys, optional = gold_parameters(gold)
    wanted = (keys - optional) | (set(p) & optional)
    union = set(p) | wanted
    names = len(set(p) & wanted) / len(union) if union else 1.0
    values = sum(1.0 for k in keys
                 if (k in p and value_matches(gold, k, p[k])) or (k not in p and k in optional))
    return names + values


def _best_assignment(scores: list[list[float]]) -> float:
    """The highest total of ``scores[pred][gold]`` over pairings of distinct preds and golds
    (each may stay unpaired): a dynamic programme over the set of golds already paired."""
    n_gold = len(scores[0]) if scores else 0
    best = {0: 0.0}
    for row in scores:
        step = dict(best)
        for mask, total in best.items():
            for g in range(n_gold):
                if not mask >> g & 1:
                    new = mask | 1 << g
                    step[new] = max(step.get(new, float("-inf")), total + row[g])
        best = step
    return max(best.values())


def toolrl_correctness(pred: list[dict[str, Any]], gold: list[dict[str, Any]],
                       max_pairs: int = 10) -> float:
    """ToolRL's fine-grained tool reward, in [-3, 3].

    ``r_name`` is the Jaccard overlap of the called and gold tool names; each gold call is paired
    with a predicted call of the same name (the pairing that scores best) and adds its
    parameter-name Jaccard (``r_param``, at most 1 per gold call) and the number of its values
    matched (``r_value``, at most its parameter count). With ``S_max = 1 + |gold| + sum of gold
    parameter counts``, the reward is ``6 (r_name + r_param + r_value) / S_max - 3``: 3 for the
    gold calls exactly, -3 for nothing right. No gold call and no call made is a perfect 3
    (irrelevance handled correctly); calls where none were wanted score -3. A gold call's
    parameter count includes its ``acceptable`` and ``optional`` ones (see the module doc);
    only the first ``max_pairs`` gold calls of each name are paired.
    """
    if not gold:
        return 3.0 if not pred else -3.0
    pred_names, gold_names = {c.get("name") for c in pred}, {c.get("name") for c in gold}
    union = pred_names | gold_names
    r_name = len(pred_names & gold_names) / len(union) if union else 0.0
    s_max = 1 + len(gold) + sum(len(gold_parameters(g)[0]) for g in gold)
    # Only same-name pairs score, so pair within each name, exactly (scores are >= 0).
    best = 0.0
    for name in gold_names:
        golds = [g for g in gold if g.get("name") == name][:max_pairs]
        preds = [c for c in pred if c.get("name") == name]
        best += _best_assignment([[_pair_score(c, g) for g in golds] for c in preds])
    return 6 * (r_name + best) / s_max - 3
