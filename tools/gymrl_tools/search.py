"""The ``search`` tool: BM25 over a local corpus (offline, deterministic) or the web (ddgs).

The local backend is the one to train with: the same query gives the same results on every
machine, and the generated corpus invents every fact, so a policy has to search to answer.
The web backend is for trying a policy on real questions; it fails per call, quickly and with a
clear error, when the web cannot be reached.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gymrl import ConfigError, Tool, ToolResult
from gymrl_tools.corpus import Document, generate_corpus, load_corpus_jsonl

BACKENDS = ("bm25", "ddgs")

#: Characters of an article shown per result; fewer when many results must share the budget.
SNIPPET_CHARS = 300
#: gymrl cuts a tool result longer than this (``gymrl.tool.MAX_RESULT_CHARS``, which plugins do
#: not import): all results must fit in it, or the last ones would be cut away unseen.
_RESULT_BUDGET = 2000

_WHERE = {"bm25": "the local encyclopedia", "ddgs": "the web"}


class SearchTool(Tool):
    """Search the local encyclopedia (BM25) or the web (DuckDuckGo via ddgs).

    Args:
        backend: ``bm25`` (offline, over ``corpus``) or ``ddgs`` (the web).
        corpus: ``generated`` for :func:`~gymrl_tools.corpus.generate_corpus`, or the path of a
            JSONL file of ``{"id", "title", "text"}`` lines. Unused by ``ddgs``.
        corpus_seed: seed of the generated corpus.
        top_k: results per call when the call does not say.
        timeout_s: longest a web search may take before the call gives an error.

    Raises:
        ConfigError: an unknown backend, a ``top_k`` outside 1-10, a non-positive timeout, or a
            corpus file that is missing or malformed.
    """

    name = "search"
    parameters: dict[str, Any] = {
        "type": "object",
        "properties": {
            "query": {"type": "string", "minLength": 1, "maxLength": 500},
            "top_k": {"type": "integer", "minimum": 1, "maximum": 10},
        },
        "required": ["query"],
        "additionalProperties": False,
    }

    def __init__(self, backend: str = "bm25", corpus: str = "generated", corpus_seed: int = 0,
                 top_k: int = 3, timeout_s: float = 5.0) -> None:
        if backend not in BACKENDS:
            raise ConfigError(f"unknown search backend {backend!r}; allowed: "
                              f"{', '.join(BACKENDS)}")
        if isinstance(top_k, bool) or not isinstance(top_k, int) or not 1 <= top_k <= 10:
            raise ConfigError(f"search top_k must be an integer from 1 to 10, got {top_k!r}")
        if not timeout_s > 0:
            raise ConfigError(f"search timeout_s must be positive, got {timeout_s!r}")
        self.backend = backend
        self.top_k = top_k
        self.timeout_s = float(timeout_s)
        self.description = f"Search {_WHERE[backend]} and return the top results"
        self._index = _bm25_index(corpus, corpus_seed) if backend == "bm25" else None

    def call(self, arguments: dict[str, Any]) -> ToolResult:
        query: str = arguments["query"]
        k: int = arguments.get("top_k", self.top_k)
        if self._index is not None:
            return self._index.search(query, k)
        return _web_search(query, k, self.timeout_s)


def _format(hits: list[tuple[str, str]]) -> str:
    """Numbered ``1. <title>: <text>`` lines, each cut so that all fit in one tool result."""
    if not hits:
        return "no results"
    limit = min(SNIPPET_CHARS, (_RESULT_BUDGET - 20) // len(hits) - 5)
    lines = []
    for n, (title, text) in enumerate(hits, start=1):
        line = f"{title}: {' '.join(text.split())}"
        if len(line) > limit:
            line = line[:limit].rsplit(" ", 1)[0] + " ..."
        lines.append(f"{n}. {line}")
    return "\n".join(lines)


# -- bm25 ------------------------------------------------------------------------------------


@dataclass
class _Index:
    """A BM25 index over one corpus; read-only after it is built, so tools share it."""

    docs: list[Document]
    retriever: Any  # bm25s.BM25

    def search(self, query: str, k: int) -> ToolResult:
        import bm25s
        import numpy as np

        tokens = bm25s.tokenize(query, stopwords="en", return_ids=False, show_progress=False)[0]
        known = [t for t in tokens if t in self.retriever.vocab_dict]
        if not known:  # only stopwords, or words no article uses
            return ToolResult(content="no results", facts={"doc_ids": []})
        scores = self.retriever.get_scores(known)
        # Highest score first, ties by corpus order, so results never depend on sort stability.
        order = np.lexsort((np.arange(len(scores)), -scores))
        top = [int(i) for i in order[:k] if scores[i] > 0]
        docs = [self.docs[i] for i in top]
        return ToolResult(content=_format([(d.title, d.text) for d in docs]),
                          facts={"doc_ids": [d.id for d in docs],
                                 "scores": [round(float(scores[i]), 4) for i in top]})


_INDEXES: dict[tuple[Any, ...], _Index] = {}
_INDEXES_LOCK = threading.Lock()


def _bm25_index(corpus: str, seed: int) -> _Index:
    """The index of a corpus, built once per process: every env of a run shares it."""
    if corpus == "generated":
        key: tuple[Any, ...] = ("generated", seed)
    else:
        path = Path(corpus).expanduser().resolve()
        try:
            stat = path.stat()
        except OSError as exc:
            raise ConfigError(f"search corpus {corpus!r}: {exc.strerror}; use 'generated' or "
                              "the path of a JSONL file") from exc
        key = ("file", str(path), stat.st_mtime_ns, stat.st_size)  # an edited file is re-read
    with _INDEXES_LOCK:
        if key not in _INDEXES:
            _INDEXES[key] = _build_index(_load(corpus, seed))
        return _INDEXES[key]


def _load(corpus: str, seed: int) -> list[Document]:
    if corpus == "generated":
        return generate_corpus(seed)
    try:
        return load_corpus_jsonl(corpus)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"search corpus: {exc}") from exc


def _build_index(docs: list[Document]) -> _Index:
    import bm25s

    # The title is indexed with the text: it is the name a question most often uses.
    tokenized = bm25s.tokenize([f"{d.title}. {d.text}" for d in docs], stopwords="en",
                               show_progress=False)
    retriever = bm25s.BM25()
    retriever.index(tokenized, show_progress=False)
    return _Index(docs=docs, retriever=retriever)


# -- ddgs ------------------------------------------------------------------------------------


def _web_search(query: str, k: int, timeout_s: float) -> ToolResult:
    """Top ``k`` web results, or an error within about ``timeout_s`` seconds.

    ddgs tries several engines in turn; on a network that drops packets instead of refusing
    them that can take far longer than its own timeout, so the search runs in a daemon thread
    that this call stops waiting for.
    """
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            from ddgs import DDGS

            outcome["results"] = DDGS(timeout=max(1, round(timeout_s))).text(
                query, max_results=k)
        except Exception as exc:  # reported to the model below, whatever ddgs raised
            outcome["error"] = exc

    worker = threading.Thread(target=run, name="gymrl-ddgs-search", daemon=True)
    worker.start()
    worker.join(timeout_s + 0.5)
    if worker.is_alive():
        return ToolResult(error=f"web search failed (offline or blocked): no answer within "
                                f"{timeout_s:g} s", facts={"timeout": True})
    if "error" in outcome:
        exc = outcome["error"]
        if str(exc) == "No results found.":  # ddgs's word for an empty answer, not a failure
            return ToolResult(content="no results", facts={"urls": []})
        return ToolResult(error=f"web search failed (offline or blocked): "
                                f"{type(exc).__name__}: {exc}"[:300])
    results = outcome.get("results") or []
    hits = [(str(r.get("title", "")), str(r.get("body", ""))) for r in results[:k]]
    return ToolResult(content=_format(hits),
                      facts={"urls": [str(r.get("href", "")) for r in results[:k]]})
