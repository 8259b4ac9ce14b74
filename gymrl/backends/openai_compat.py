"""``openai:MODEL``: any OpenAI-compatible chat-completions endpoint (OpenAI, vLLM, llama.cpp).

The ``openai`` package is imported when a backend is built, so importing this module is cheap.
"""

from __future__ import annotations

import os
import re
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from gymrl.backends.base import Backend, Completion, Request, truncate_at_stop
from gymrl.errors import BackendError, ConfigError

# The chat-completions API accepts at most this many stop strings.
_MAX_STOPS = 4
_CLOSING_TAG = re.compile(r"\s*</([A-Za-z_][\w.:\-]*)\s*>\s*")


class OpenAIBackend(Backend):
    """Sends each request to ``POST {base_url}/chat/completions``, a batch concurrently.

    The API key is read from the environment variable ``api_key_env``; when it is unset the
    placeholder key ``"EMPTY"`` is sent, which local servers (vLLM, llama.cpp) accept and hosted
    APIs reject with an authentication error.

    Stop strings: the first four of each request are sent as ``stop`` (the API's limit), and the
    returned text is also cut locally at the earliest of all of them. Servers strip the stop
    string they hit and do not say which one it was, while gymrl policies keep it (an answer
    must end with ``</answer>``). So when ``finish_reason == "stop"`` and the text does not
    already end with a stop string, the closing tag whose opening tag (``<answer>`` for
    ``</answer>``) is the last one left unclosed in the text is appended, and recorded in
    ``meta["appended_stop"]``. Stops that are not closing tags are never re-appended: a
    ``"stop"`` finish may just as well mean the model ended its turn.

    Completions carry ``prompt_tokens`` and ``completion_tokens`` from the server's ``usage``
    (0 when it sends none); ``token_ids`` and ``logprobs`` are None.

    Args:
        target: the model name the server knows, e.g. ``gpt-4o-mini``.
        base_url: the API root, up to and including ``/v1``.
        api_key_env: the environment variable that holds the API key.
        timeout: seconds one request may take (connect and each read) before it fails.
        max_retries: retries of a failed request; 0 fails at once.
        max_tokens: most tokens generated per completion.
        temperature: sampling temperature.
        concurrency: requests of a batch in flight at once.

    Raises:
        ConfigError: a bad option value.
        BackendError: from ``generate``, when the server cannot be reached, times out, answers
            with an HTTP error status or with a malformed response.
    """

    def __init__(
        self,
        target: str,
        *,
        base_url: str = "https://api.openai.com/v1",
        api_key_env: str = "OPENAI_API_KEY",
        timeout: float = 30.0,
        max_retries: int = 0,
        max_tokens: int = 512,
        temperature: float = 1.0,
        concurrency: int = 8,
    ) -> None:
        if not target:
            raise ConfigError("openai backend needs a model name, e.g. openai:gpt-4o-mini")
        if timeout <= 0:
            raise ConfigError(f"timeout must be > 0 seconds, got {timeout}")
        if max_retries < 0:
            raise ConfigError(f"max_retries must be >= 0, got {max_retries}")
        if max_tokens < 1:
            raise ConfigError(f"max_tokens must be >= 1, got {max_tokens}")
        if temperature < 0:
            raise ConfigError(f"temperature must be >= 0, got {temperature}")
        if concurrency < 1:
            raise ConfigError(f"concurrency must be >= 1, got {concurrency}")
        import openai

        self.name = f"openai:{target}"
        self.target = target
        self.base_url = base_url
        self.timeout = timeout
        self.max_tokens = max_tokens
        self.temperature = temperature
        self.concurrency = concurrency
        self._openai = openai
        self._client = openai.OpenAI(
            base_url=base_url,
            api_key=os.environ.get(api_key_env) or "EMPTY",
            timeout=timeout,
            max_retries=max_retries,
        )

    def generate(self, requests: list[Request]) -> list[Completion]:
        """Complete each request (``concurrency`` at a time); results keep the request order."""
        if len(requests) <= 1:
            return [self._complete(r) for r in requests]
        with ThreadPoolExecutor(max_workers=min(self.concurrency, len(requests))) as pool:
            futures = [pool.submit(self._complete, r) for r in requests]
            try:
                return [f.result() for f in futures]
            except BaseException:
                for f in futures:
                    f.cancel()
                raise

    def _complete(self, request: Request) -> Completion:
        openai = self._openai
        where = f"{self.base_url} (model {self.target!r}, timeout {self.timeout:g}s)"
        try:
            response = self._client.chat.completions.create(
                model=self.target,
                messages=request.messages,
                stop=list(request.stop)[:_MAX_STOPS] or None,
                max_tokens=self.max_tokens,
                temperature=self.temperature,
            )
        except openai.APITimeoutError as e:
            raise BackendError(f"no answer from {where} within the timeout") from e
        except openai.APIConnectionError as e:
            raise BackendError(f"cannot reach {where}: {_cause(e)}") from e
        except openai.APIStatusError as e:
            raise BackendError(f"{where} answered HTTP {e.status_code}: {e.message}") from e
        except openai.OpenAIError as e:
            raise BackendError(f"bad response from {where}: {e}") from e
        try:
            choice = response.choices[0]
            text = choice.message.content or ""
            finish = choice.finish_reason or "stop"
        except (AttributeError, IndexError, TypeError) as e:
            raise BackendError(f"malformed response from {where}: {response!r:.300}") from e
        meta: dict[str, Any] = {}
        text, hit = truncate_at_stop(text, request.stop)
        if hit:
            finish = "stop"
        elif finish == "stop":
            appended = reappend_stop(text, request.stop)
            if appended:
                text += appended
                meta["appended_stop"] = appended
        usage = getattr(response, "usage", None)
        return Completion(
            text=text,
            prompt_tokens=int(getattr(usage, "prompt_tokens", 0) or 0),
            completion_tokens=int(getattr(usage, "completion_tokens", 0) or 0),
            finish_reason=finish,
            meta=meta,
        )

    def close(self) -> None:
        """Close the HTTP client."""
        self._client.close()


def reappend_stop(text: str, stop: tuple[str, ...] | list[str]) -> str | None:
    """Guess which closing-tag stop string a server stripped from ``text``.

    Among the stop strings that are closing tags (``</answer>``), picks the one whose opening
    tag (``<answer>`` or ``<answer ...>``) occurs last in ``text`` without being closed after.

    Args:
        text: the completion as the server returned it.
        stop: the request's stop strings.

    Returns:
        The stop string to append, or None when no closing tag is left open.
    """
    best, best_at = None, -1
    for s in stop:
        m = _CLOSING_TAG.fullmatch(s)
        if not m:
            continue
        name = re.escape(m.group(1))
        opens = [o.end() for o in re.finditer(rf"<{name}(\s[^>]*)?>", text)]
        if not opens:
            continue
        last = opens[-1]
        if re.search(rf"</{name}\s*>", text[last:]):
            continue  # closed already
        if last > best_at:
            best, best_at = s, last
    return best


def _cause(e: BaseException) -> str:
    """The innermost cause's message: 'Connection refused' rather than 'Connection error.'."""
    seen = {id(e)}
    while (nxt := e.__cause__ or e.__context__) is not None and id(nxt) not in seen:
        seen.add(id(nxt))
        e = nxt
    return str(e) or type(e).__name__
