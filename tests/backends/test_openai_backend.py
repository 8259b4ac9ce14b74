"""The openai backend against a tiny OpenAI-compatible server on 127.0.0.1: no network."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from gymrl.backends.base import Request
from gymrl.backends.openai_compat import OpenAIBackend, reappend_stop
from gymrl.errors import BackendError, ConfigError


def canned_reply(question: str) -> str:
    return f"<think> thinking about {question} </think> <answer> {question.upper()} </answer> done"


class ChatHandler(BaseHTTPRequestHandler):
    """``POST /v1/chat/completions``, deterministic: the reply depends on the last user message.

    Special messages: ``fail`` answers HTTP 500, ``slow`` waits 3 s (or until the test ends),
    ``pause`` waits 0.2 s (to observe concurrency). Stop strings are honoured the way real
    servers do: the text is cut before the earliest one, which is stripped.
    """

    protocol_version = "HTTP/1.1"
    server: TestServer

    def log_message(self, format: str, *args: object) -> None:  # keep pytest output clean
        pass

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
        srv = self.server
        with srv.lock:
            srv.seen.append({"body": body, "auth": self.headers.get("Authorization")})
            srv.inflight += 1
            srv.max_inflight = max(srv.max_inflight, srv.inflight)
        try:
            if self.path != "/v1/chat/completions":
                return self._send(404, {"error": {"message": f"no route {self.path}"}})
            question = [m for m in body["messages"] if m["role"] == "user"][-1]["content"]
            if question == "fail":
                return self._send(500, {"error": {"message": "boom", "type": "server_error"}})
            if question == "slow":
                srv.wake.wait(3.0)
            if question.startswith("pause"):
                time.sleep(0.2)
            text, finish = canned_reply(question), "stop"
            cuts = [text.find(s) for s in body.get("stop") or [] if s in text]
            if cuts:
                text = text[:min(cuts)]
            words = text.split(" ")
            if len(words) > body["max_tokens"]:
                text, finish = " ".join(words[:body["max_tokens"]]), "length"
            self._send(200, {
                "id": "chatcmpl-test",
                "object": "chat.completion",
                "created": 0,
                "model": body["model"],
                "choices": [{"index": 0, "finish_reason": finish,
                             "message": {"role": "assistant", "content": text}}],
                "usage": {
                    "prompt_tokens": sum(len(m["content"].split()) for m in body["messages"]),
                    "completion_tokens": len(text.split()),
                    "total_tokens": 0,
                },
            })
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (timeout test)
        finally:
            with srv.lock:
                srv.inflight -= 1

    def _send(self, status: int, payload: dict) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


class TestServer(ThreadingHTTPServer):
    __test__ = False  # not a pytest test class
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), ChatHandler)
        self.lock = threading.Lock()
        self.wake = threading.Event()
        self.seen: list[dict] = []
        self.inflight = 0
        self.max_inflight = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v1"


@pytest.fixture(scope="module")
def server() -> Iterator[TestServer]:
    srv = TestServer()
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv
    srv.wake.set()
    srv.shutdown()
    srv.server_close()


@pytest.fixture(autouse=True)
def _loopback_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """No proxy for the test server, and no real API key from the environment."""
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)


def ask(question: str, stop: tuple[str, ...] = ()) -> Request:
    return Request(messages=[{"role": "system", "content": "be brief"},
                             {"role": "user", "content": question}], stop=stop)


def backend(server: TestServer, **options: object) -> OpenAIBackend:
    return OpenAIBackend("test-model", base_url=server.url, **options)


def test_batch_comes_back_in_order_with_usage(server: TestServer) -> None:
    questions = ["pause one", "pause two", "pause three", "pause four", "pause five"]
    out = backend(server, concurrency=3).generate([ask(q) for q in questions])
    assert [c.text for c in out] == [canned_reply(q) for q in questions]
    for q, c in zip(questions, out, strict=True):
        assert c.prompt_tokens == 2 + len(q.split())
        assert c.completion_tokens == len(canned_reply(q).split())
        assert c.finish_reason == "stop"
        assert c.token_ids is None and c.logprobs is None
    assert server.max_inflight >= 2  # requests of a batch really overlap


def test_request_body_and_placeholder_key(server: TestServer,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    server.seen.clear()
    backend(server, max_tokens=64, temperature=0.0).generate([ask("x", stop=("</answer>",))])
    body = server.seen[-1]["body"]
    assert body["model"] == "test-model"
    assert body["stop"] == ["</answer>"]
    assert body["max_tokens"] == 64
    assert body["temperature"] == 0.0
    assert body["messages"][-1] == {"role": "user", "content": "x"}
    assert server.seen[-1]["auth"] == "Bearer EMPTY"

    monkeypatch.setenv("MY_KEY", "sk-test")
    backend(server, api_key_env="MY_KEY").generate([ask("x")])
    assert server.seen[-1]["auth"] == "Bearer sk-test"
    backend(server).generate([ask("x")])
    assert "stop" not in server.seen[-1]["body"] or server.seen[-1]["body"]["stop"] is None


def test_stripped_closing_tag_is_appended_back(server: TestServer) -> None:
    out = backend(server).generate([
        ask("paris", stop=("</search>", "</answer>")),
        ask("rome", stop=("</think>",)),
    ])
    assert out[0].text == "<think> thinking about paris </think> <answer> PARIS </answer>"
    assert out[0].meta["appended_stop"] == "</answer>"
    assert out[0].finish_reason == "stop"
    assert out[1].text == "<think> thinking about rome </think>"


def test_natural_end_and_plain_stops_are_left_alone(server: TestServer) -> None:
    out = backend(server).generate([ask("paris", stop=("</search>",)),
                                    ask("rome", stop=("done",))])
    assert out[0].text == canned_reply("paris")  # nothing left open: the model just ended
    assert "appended_stop" not in out[0].meta
    assert out[1].text == canned_reply("rome")[:-len("done")]  # not a tag: cannot tell


def test_only_four_stops_are_sent_and_all_are_applied(server: TestServer) -> None:
    stops = ("<a>", "<b>", "<c>", "<d>", "about")
    out = backend(server).generate([ask("paris", stop=stops)])[0]
    assert server.seen[-1]["body"]["stop"] == list(stops[:4])
    assert out.text == "<think> thinking about"
    assert out.finish_reason == "stop"


def test_max_tokens_gives_length(server: TestServer) -> None:
    out = backend(server, max_tokens=3).generate([ask("paris", stop=("</answer>",))])[0]
    assert out.finish_reason == "length"
    assert out.text == "<think> thinking about"
    assert "appended_stop" not in out.meta


def test_http_error_names_url_model_and_status(server: TestServer) -> None:
    with pytest.raises(BackendError) as info:
        backend(server).generate([ask("ok"), ask("fail")])
    message = str(info.value)
    assert server.url in message
    assert "test-model" in message
    assert "500" in message


def test_connection_refused_fails_fast() -> None:
    with socket.socket() as s:  # bound then closed: nothing listens there
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/v1"
    start = time.monotonic()
    with pytest.raises(BackendError, match="cannot reach") as info:
        OpenAIBackend("test-model", base_url=url, timeout=5.0).generate([ask("x")])
    assert time.monotonic() - start < 5.0
    assert url in str(info.value)
    assert "test-model" in str(info.value)


def test_slow_server_times_out(server: TestServer) -> None:
    start = time.monotonic()
    with pytest.raises(BackendError, match="timeout 0.5s") as info:
        backend(server, timeout=0.5).generate([ask("slow")])
    assert time.monotonic() - start < 2.5
    assert server.url in str(info.value)


@pytest.mark.parametrize("option", [{"timeout": 0}, {"max_retries": -1}, {"max_tokens": 0},
                                    {"temperature": -0.1}, {"concurrency": 0}])
def test_bad_options_are_config_errors(option: dict) -> None:
    with pytest.raises(ConfigError):
        OpenAIBackend("m", **option)


@pytest.mark.parametrize(("text", "stop", "expected"), [
    ("<answer> 4", ("</answer>",), "</answer>"),
    ("<search> a </search> <answer> 4", ("</search>", "</answer>"), "</answer>"),
    ("<answer> 4 </answer> <search> q", ("</search>", "</answer>"), "</search>"),
    ('<search k="v"> q', ("</search>",), "</search>"),
    ("<answer> 4 </answer>", ("</answer>",), None),
    ("no tags at all", ("</answer>",), None),
    ("<answer> 4", ("\n\n",), None),
    ("<answer> 4", ("</answer>\n",), "</answer>\n"),
])
def test_reappend_stop(text: str, stop: tuple[str, ...], expected: str | None) -> None:
    assert reappend_stop(text, stop) == expected


# -- the backend inside the product: eval as a policy, and experts of the router's pool --------

def test_router_eval_with_an_openai_policy(server: TestServer, tmp_path: Path) -> None:
    import json as _json

    from gymrl.cli import main

    code = main(["eval", "env=router", "policy=openai:test-model", f"policy.base_url={server.url}",
                 "episodes=3", "batch_size=3", f"output_dir={tmp_path}", "progress=false"])
    assert code == 0
    result = _json.loads((tmp_path / "results.json").read_text())
    for episode in result["episodes"]:
        assert episode["rewards"]["format"] == 0.0  # the canned reply follows the grammar
        assert episode["turns"][1]["text"].rstrip().endswith("</answer>")
    assert result["summary"]["overall"]["answered"] == 1.0


def test_router_pool_of_openai_experts(server: TestServer, tmp_path: Path) -> None:
    from gymrl.make import make_env

    pool = tmp_path / "pool.yaml"
    pool.write_text(
        "experts:\n"
        f"  - {{name: small, backend: 'openai:m-small', price_per_mtok: 0.5,"
        f" options: {{base_url: '{server.url}'}}}}\n"
        f"  - {{name: big, backend: 'openai:m-big', price_per_mtok: 5.0, strengths: all,"
        f" options: {{base_url: '{server.url}'}}}}\n")
    env = make_env("router", pool=str(pool))
    obs, info = env.reset(seed=0)
    assert "- big ($5.00/M tokens): all" in info["messages"][0]["content"]
    obs, *_ = env.step("<think>t</think><search>big: who wrote hamlet</search>")
    assert "WHO WROTE HAMLET" in obs
    (call,) = env.episode.tool_calls
    assert server.seen[-1]["body"]["model"] == "m-big"
    assert call.cost_usd == pytest.approx((call.prompt_tokens + call.completion_tokens) * 5e-6)


def test_router_pool_expert_unreachable_is_a_call_error(tmp_path: Path) -> None:
    from gymrl.make import make_env

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    pool = tmp_path / "pool.yaml"
    pool.write_text("experts:\n  - {name: gone, backend: 'openai:m', price_per_mtok: 1.0, "
                    f"options: {{base_url: 'http://127.0.0.1:{port}/v1', timeout: 2}}}}\n")
    env = make_env("router", pool=str(pool))
    env.reset(seed=0)
    obs, *_ = env.step("<think>t</think><search>gone: hello</search>")
    assert "could not be reached" in obs
    assert "127.0.0.1" in env.episode.tool_calls[0].error
