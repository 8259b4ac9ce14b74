"""A Gymnasium space of UTF-8 text: any ``str`` up to a length, any characters.

Gymnasium's ``Text`` space needs a finite charset (alphanumeric by default), which would reject
the tags, punctuation and non-ASCII text that an LLM writes.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from gymnasium.spaces import Space

# Characters ``sample()`` draws from: printable ASCII, whitespace, a few non-ASCII letters and
# the tag characters LLM protocols use, so samples exercise parsers like real output does.
_SAMPLE_ALPHABET = (
    [chr(c) for c in range(32, 127)] + ["\n", "\t"] + list("éüßøñ中文Ж—…😀")
)


class UTF8Text(Space[str]):
    """Strings of at most ``max_length`` characters that encode as UTF-8."""

    def __init__(self, max_length: int = 65536, *, min_length: int = 0,
                 seed: int | np.random.Generator | None = None) -> None:
        if max_length < min_length or min_length < 0:
            raise ValueError(f"need 0 <= min_length <= max_length, got {min_length}, {max_length}")
        self.max_length = int(max_length)
        self.min_length = int(min_length)
        super().__init__(dtype=str, seed=seed)

    def contains(self, x: Any) -> bool:
        if not isinstance(x, str) or not self.min_length <= len(x) <= self.max_length:
            return False
        try:
            x.encode("utf-8")
        except UnicodeEncodeError:  # lone surrogates
            return False
        return True

    def sample(self, mask: Any = None, probability: Any = None) -> str:
        upper = min(self.max_length, max(self.min_length, 64))
        length = int(self.np_random.integers(self.min_length, upper + 1))
        idx = self.np_random.integers(0, len(_SAMPLE_ALPHABET), size=length)
        return "".join(_SAMPLE_ALPHABET[i] for i in idx)

    @property
    def is_np_flattenable(self) -> bool:
        return False

    def __repr__(self) -> str:
        return f"UTF8Text(max_length={self.max_length})"

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, UTF8Text) and other.max_length == self.max_length
                and other.min_length == self.min_length)
