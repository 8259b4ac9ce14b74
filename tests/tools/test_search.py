"""The search tool: BM25 over the generated corpus, the web backend offline, registration."""

from __future__ import annotations

import json
import random
import socket
import threading
import time
from importlib import metadata

import pytest

import gymrl
from gymrl import ConfigError, plugins
from gymrl.plugins import PluginInfo, Registry
from gymrl_tools import plugin
from gymrl_tools.corpus import generate_corpus, generate_questions
from gymrl_tools.kv_store import KVStoreTool
from gymrl_tools.search import SearchTool


@pytest.fixture(scope="module")
def bm25() -> SearchTool:
    return SearchTool(backend="bm25", corpus_seed=0)


@pytest.fixture(scope="module")
def sample():
    corpus = generate_corpus(seed=0)
    return random.Random(0).sample(generate_questions(corpus), 100)


def test_gold_document_is_in_the_top_three_for_nine_in_ten(bm25, sample):
    hits_at_1 = hits_at_3 = 0
    for q in sample:
        result = bm25({"query": q.question})
        assert result.ok, result.error
        doc_ids = result.facts["doc_ids"]
        hits_at_1 += doc_ids[:1] == [q.doc_id]
        hits_at_3 += q.doc_id in doc_ids[:3]
        if q.doc_id in doc_ids:  # the snippet shown must hold the answer, not cut it off
            assert q.answer in result.content, (q, result.content)
    assert hits_at_3 >= 90, f"recall@3 {hits_at_3}%, recall@1 {hits_at_1}%"


def test_results_are_numbered_title_text_lines_and_deterministic(bm25, sample):
    again = SearchTool(backend="bm25", corpus_seed=0)
    for q in sample[:20]:
        first, second = bm25({"query": q.question}), again({"query": q.question})
        assert (first.content, first.facts) == (second.content, second.facts)
        lines = first.content.splitlines()
        assert len(lines) == len(first.facts["doc_ids"]) == 3
        assert all(line.startswith(f"{n}. ") and ": " in line
                   for n, line in enumerate(lines, start=1))
        assert all(len(line) <= 310 for line in lines)


def test_top_k_argument_and_budget(bm25):
    one = bm25({"query": "river", "top_k": 1})
    assert len(one.facts["doc_ids"]) == 1
    ten = bm25({"query": "river sea mountain company", "top_k": 10})
    assert len(ten.facts["doc_ids"]) == 10
    assert "[cut at" not in ten.text()  # all ten results fit in one tool result


def test_query_without_known_words_finds_nothing(bm25):
    for query in ("the of and", "zzzqqq", "   "):
        result = bm25({"query": query})
        assert result.ok and result.content == "no results" and result.facts["doc_ids"] == []


@pytest.mark.parametrize("arguments", [
    {}, {"query": ""}, {"query": "x", "top_k": 0}, {"query": "x", "top_k": 11},
    {"query": "x", "top_k": "3"}, {"query": "x", "extra": 1}, {"query": "x" * 10_000},
    {"query": 7}, "river", None,
])
def test_schema_violations_are_error_results(bm25, arguments):
    result = bm25(arguments)
    assert not result.ok and result.error.startswith("invalid parameters for search")


def test_construction_errors_say_what_is_allowed(tmp_path):
    with pytest.raises(ConfigError, match=r"'google'.*allowed: bm25, ddgs"):
        SearchTool(backend="google")
    with pytest.raises(ConfigError, match="top_k"):
        SearchTool(top_k=0)
    with pytest.raises(ConfigError, match="timeout_s"):
        SearchTool(backend="ddgs", timeout_s=0)
    with pytest.raises(ConfigError, match="generated"):
        SearchTool(corpus=str(tmp_path / "missing.jsonl"))
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "a", "title": "A", "text": "x"}\n{oops\n')
    with pytest.raises(ConfigError, match=r"bad.jsonl:2"):
        SearchTool(corpus=str(bad))


def test_own_corpus_file(tmp_path):
    path = tmp_path / "notes.jsonl"
    rows = [{"id": "n1", "title": "Kettle", "text": "The kettle boils water for tea."},
            {"id": "n2", "title": "Lamp", "text": "The lamp lights the reading desk."}]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    result = SearchTool(corpus=str(path))({"query": "what lights the desk"})
    assert result.facts["doc_ids"] == ["n2"]
    assert result.content == "1. Lamp: The lamp lights the reading desk."


def test_a_new_corpus_indexes_quickly():
    start = time.perf_counter()
    SearchTool(corpus_seed=12345)
    assert time.perf_counter() - start < 5.0  # measured about 0.05 s


def test_descriptions_name_the_backend():
    assert SearchTool().description == "Search the local encyclopedia and return the top results"
    assert SearchTool(backend="ddgs").description == "Search the web and return the top results"


# -- ddgs ------------------------------------------------------------------------------------


def _online() -> bool:
    try:
        socket.create_connection(("duckduckgo.com", 443), timeout=1).close()
        return True
    except OSError:
        return False


@pytest.mark.skipif(_online(), reason="the web is reachable; this checks the offline failure")
def test_web_search_offline_fails_fast_with_an_error():
    tool = SearchTool(backend="ddgs", timeout_s=2.0)
    start = time.perf_counter()
    result = tool({"query": "capital of France"})
    elapsed = time.perf_counter() - start
    assert result.error.startswith("web search failed (offline or blocked): ")
    assert elapsed < 2.0 + 2


class _FakeDDGS:
    """Stands in for ddgs.DDGS: answers, finds nothing, or hangs until released."""

    mode = "answer"
    release = threading.Event()

    def __init__(self, timeout: int) -> None:
        self.timeout = timeout

    def text(self, query: str, max_results: int) -> list[dict[str, str]]:
        if self.mode == "hang":
            self.release.wait(30)
        if self.mode == "empty":
            from ddgs.exceptions import DDGSException

            raise DDGSException("No results found.")
        return [{"title": f"T{i}", "body": f"about {query}", "href": f"https://e.x/{i}"}
                for i in range(max_results)]


@pytest.fixture
def fake_ddgs(monkeypatch):
    monkeypatch.setattr("ddgs.DDGS", _FakeDDGS)
    _FakeDDGS.release.clear()
    yield _FakeDDGS
    _FakeDDGS.release.set()
    _FakeDDGS.mode = "answer"


def test_web_results_are_formatted_like_local_ones(fake_ddgs):
    result = SearchTool(backend="ddgs")({"query": "tea", "top_k": 2})
    assert result.content == "1. T0: about tea\n2. T1: about tea"
    assert result.facts["urls"] == ["https://e.x/0", "https://e.x/1"]
    fake_ddgs.mode = "empty"
    assert SearchTool(backend="ddgs")({"query": "tea"}).content == "no results"


def test_web_search_that_hangs_is_abandoned_after_the_timeout(fake_ddgs):
    fake_ddgs.mode = "hang"
    start = time.perf_counter()
    result = SearchTool(backend="ddgs", timeout_s=0.5)({"query": "tea"})
    assert time.perf_counter() - start < 0.5 + 1
    assert result.error.startswith("web search failed (offline or blocked)")
    assert result.facts["timeout"] is True


# -- registration ----------------------------------------------------------------------------


@pytest.fixture
def tools_registry():
    """A registry holding just this plugin, whether or not the package is installed."""
    saved = plugins._registry
    reg = Registry()
    reg.add_plugin(plugin, PluginInfo(name="tools", module="gymrl_tools.plugin",
                                      package="gymrl-tools", version="test"))
    plugins.reset(reg)
    yield reg
    plugins._registry = saved


def test_make_tool_builds_the_registered_tools(tools_registry):
    search = gymrl.make_tool("search", {"backend": "bm25"})
    assert isinstance(search, SearchTool) and search.spec()["name"] == "search"
    assert isinstance(gymrl.make_tool("kv_store"), KVStoreTool)
    assert tools_registry.get("tool", "search").description
    with pytest.raises(ConfigError, match="valid options"):
        gymrl.make_tool("search", {"backnd": "bm25"})
    with pytest.raises(ConfigError, match="allowed: bm25, ddgs"):
        gymrl.make_tool("search", {"backend": "bing"})


def test_installed_entry_point_registers_the_tools(fresh_registry):
    if not any(ep.value == "gymrl_tools.plugin"
               for ep in metadata.entry_points(group="gymrl")):
        pytest.skip("gymrl-tools is not installed (pip install -e tools --no-deps)")
    assert {"search", "kv_store"} <= set(fresh_registry.items["tool"])
