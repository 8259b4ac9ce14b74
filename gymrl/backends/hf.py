"""``hf:TARGET``: a local transformers causal LM, batched generation with the chat template.

torch and transformers are imported inside the methods, so importing this module is cheap.
"""

from __future__ import annotations

import os
import random
import re
from collections.abc import Hashable
from typing import Any

from gymrl.backends.base import (
    Backend,
    Completion,
    Request,
    chat_prompt_ids,
    check_sampling,
    truncate_at_stop,
)
from gymrl.backends.kvcache import RowCaches
from gymrl.backends.packed import pack_linears
from gymrl.errors import BackendError, ConfigError
from gymrl.learner.model import EMBEDDED, merged_weights, resolve_model

_DTYPES = ("float32", "float16", "bfloat16", "auto")
# A Hugging Face repo id: "name" or "org/name". Anything else is a local path.
_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.\-]*(/[A-Za-z0-9][\w.\-]*)?$")
# How long the reachability check of the hub may take before we call it unreachable.
_HUB_TIMEOUT_S = 5.0
_TRUE = {"1", "ON", "YES", "TRUE"}


class HFBackend(Backend):
    """Generates with a transformers causal LM (``AutoModelForCausalLM``), loaded once.

    Each request's messages go through the tokenizer's chat template with
    ``add_generation_prompt=True``; prompts are left-padded and generated in batches of
    ``batch_size``, sampling when ``temperature > 0`` and greedy otherwise. Each completion is cut
    just after the earliest stop string of its own request (generation also stops early there).

    Completion fields:
        text: the generated text, cut exactly after the stop string it hit (EOS is not included).
        token_ids: the generated ids up to and including the token that completes the stop
            string, or the EOS token. When a stop string ends inside a token, that whole token is
            kept, so ``token_ids`` may decode to a few more characters than ``text``.
        logprobs: one per token of ``token_ids``. When sampling, the log-probability of the
            chosen token under the distribution actually sampled from (logits divided by
            ``temperature`` and restricted to the ``top_p`` nucleus). When greedy
            (``temperature == 0``), the log-probability under the model's raw logits, i.e. at
            temperature 1.
        finish_reason: ``"stop"`` when a stop string or EOS ended the turn, else ``"length"``.

    Randomness: the backend owns a seeded stream; each batch draws its torch seed from it (the
    caller's global torch RNG is left untouched). The same seed and the same sequence of
    ``generate`` calls give the same outputs on the same hardware; a repeated call with the same
    requests samples afresh.

    Args:
        target: ``smollm2`` (the embedded model), a local model directory, or a Hugging Face id
            (``org/name``) found in the local cache or, when online, on the hub.
        max_new_tokens: most tokens generated per completion.
        temperature: sampling temperature; 0 means greedy decoding.
        top_p: nucleus sampling mass (1 keeps the whole distribution).
        batch_size: requests generated together.
        device: torch device, e.g. ``"cpu"``, ``"cuda"``, ``"cuda:1"``.
        dtype: ``"float32"``, ``"float16"``, ``"bfloat16"`` or ``"auto"`` (the checkpoint's).
        seed: seed of the backend's random stream.
        local_files_only: ``True`` never contacts the hub; ``None`` contacts it only when the
            model is not cached and ``HF_HUB_OFFLINE`` / ``TRANSFORMERS_OFFLINE`` is unset;
            ``False`` contacts it whenever the model is not cached.
        min_shared_prefix: when every prompt of a batch starts with the same tokens (at least
            this many), they are encoded once: every row reads their keys and values from one
            copy (cascade attention, for the models ``gymrl.backends.cascade`` serves) or from
            a copy of its own.
        pack_linear: generate through oneDNN copies of every linear layer's weights (CPU
            only; the model then serves inference only, its weights change through
            :meth:`load_weights`, after which each layer packs again on its next call).
            SmolLM2's fp32 router rollouts on 2 cores: 1.55-1.76x the tokens/s at batch 8,
            1.13-1.25x at batch 32 (``benchmarks/rollout_speed.py``, three runs with the
            weights reordered).

    Raises:
        ConfigError: a bad option value.
        BackendError: the model cannot be loaded (missing path, not cached while the hub is
            offline or unreachable, broken checkpoint, no chat template).
    """

    def __init__(
        self,
        target: str,
        *,
        max_new_tokens: int = 256,
        temperature: float = 1.0,
        top_p: float = 1.0,
        batch_size: int = 16,
        device: str = "cpu",
        dtype: str = "float32",
        seed: int = 0,
        local_files_only: bool | None = None,
        min_shared_prefix: int = 32,
        pack_linear: bool = False,
    ) -> None:
        if not target:
            raise ConfigError("hf backend needs a model path or Hugging Face id, e.g. hf:./model")
        check_sampling(max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p,
                       batch_size=batch_size)
        if dtype not in _DTYPES:
            raise ConfigError(f"unknown dtype {dtype!r}; allowed: {', '.join(_DTYPES)}")
        self.name = f"hf:{target}"
        if target == EMBEDDED:  # hf:smollm2, the embedded model, as model=smollm2 trains it
            target = resolve_model(target)
        self.target = target
        self.max_new_tokens = max_new_tokens
        self.temperature = temperature
        self.top_p = top_p
        self.batch_size = batch_size
        self.device = device
        self.dtype = dtype
        self.seed = seed
        self.min_shared_prefix = min_shared_prefix
        self._rng = random.Random(seed)
        self._rows = RowCaches()  # KV of finished rows, kept for their next turn (keys=)
        if pack_linear and not str(device).startswith("cpu"):
            raise ConfigError(f"pack_linear packs weights for oneDNN on the CPU; device is "
                              f"{device!r}")
        self.pack_linear = pack_linear
        self.tokenizer, self.model = self._load(local_files_only)
        if pack_linear:
            pack_linears(self.model)
        self._eos_ids = self._collect_eos_ids()

    # ------------------------------------------------------------------ loading

    def _load(self, local_files_only: bool | None) -> tuple[Any, Any]:
        """Find the model (local directory, cache, hub) and load tokenizer and weights."""
        target = self.target
        path = os.path.expanduser(target)
        is_path = (os.path.isabs(path) or target.startswith((".", "~"))
                   or os.path.exists(path) or not _REPO_ID.match(target))
        if is_path:
            if not os.path.isdir(path):
                raise BackendError(
                    f"cannot load hf model {target!r}: no such directory (and not a Hugging Face "
                    f"id of the form org/name); pass the path of a local model directory")
            return self._from_pretrained(path, local_files_only=True)
        try:  # The cache first: no network when the model is already there.
            return self._from_pretrained(target, local_files_only=True, wrap=False)
        except (OSError, ValueError) as cache_err:
            offline = (local_files_only if local_files_only is not None else any(
                os.environ.get(v, "").upper() in _TRUE
                for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")))
            if offline:
                raise BackendError(
                    f"cannot load hf model {target!r}: it is not a local directory, not in the "
                    f"Hugging Face cache, and the hub is offline (HF_HUB_OFFLINE / "
                    f"local_files_only); pass the path of a local model directory instead"
                ) from cache_err
        self._check_hub(target)
        return self._from_pretrained(target, local_files_only=False)

    def _check_hub(self, target: str) -> None:
        """Fail fast, with a clear message, when the hub cannot be reached or lacks the model."""
        from huggingface_hub import HfApi
        from huggingface_hub.errors import (
            HfHubHTTPError,
            OfflineModeIsEnabled,
            RepositoryNotFoundError,
        )

        endpoint = os.environ.get("HF_ENDPOINT") or "https://huggingface.co"
        try:
            HfApi(endpoint=endpoint).model_info(target, timeout=_HUB_TIMEOUT_S)
        except RepositoryNotFoundError as e:
            raise BackendError(
                f"cannot load hf model {target!r}: not a local directory, not cached, and the "
                f"hub at {endpoint} has no such model (or it is private or gated: log in); "
                f"pass the path of a local model directory instead") from e
        except OfflineModeIsEnabled as e:  # HF_HUB_OFFLINE was set when the hub was imported
            raise BackendError(
                f"cannot load hf model {target!r}: not a local directory, not cached, and the "
                f"hub is offline (HF_HUB_OFFLINE); pass the path of a local model directory "
                f"instead") from e
        except HfHubHTTPError:
            pass  # The hub answered; let from_pretrained report what it finds.
        except Exception as e:  # Connection refused, DNS failure, timeout, offline mode.
            raise BackendError(
                f"cannot load hf model {target!r}: not a local directory, not cached, and the "
                f"hub at {endpoint} is unreachable within {_HUB_TIMEOUT_S:g}s ({e}); pass the "
                f"path of a local model directory instead") from e

    def _from_pretrained(
        self, source: str, *, local_files_only: bool, wrap: bool = True
    ) -> tuple[Any, Any]:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

        try:
            tokenizer = AutoTokenizer.from_pretrained(
                source, local_files_only=local_files_only, padding_side="left")
            dtype = self.dtype if self.dtype == "auto" else getattr(torch, self.dtype)
            model = AutoModelForCausalLM.from_pretrained(
                source, local_files_only=local_files_only, dtype=dtype)
            model.to(self.device)
        except Exception as e:
            if not wrap:
                raise OSError(str(e)) from e
            raise BackendError(f"cannot load hf model {self.target!r} from {source}: {e}") from e
        model.eval()
        if not getattr(tokenizer, "chat_template", None):
            raise BackendError(
                f"hf model {self.target!r} has no chat template (a base model?); gymrl sends "
                f"chat messages, so use an instruct/chat model or add a chat_template")
        tokenizer.padding_side = "left"
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token
        # Keep only the token ids of the checkpoint's generation defaults: its sampling knobs
        # (top_k, repetition_penalty, ...) would silently change the distribution we document.
        old = model.generation_config
        model.generation_config = GenerationConfig(
            bos_token_id=old.bos_token_id,
            eos_token_id=old.eos_token_id if old.eos_token_id is not None
            else tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        )
        return tokenizer, model

    @property
    def eos_ids(self) -> set[int]:
        """Token ids that end a turn (the model's EOS ids and the tokenizer's)."""
        return self._eos_ids

    def _collect_eos_ids(self) -> set[int]:
        eos = self.model.generation_config.eos_token_id
        ids = set(eos if isinstance(eos, list) else [] if eos is None else [eos])
        if self.tokenizer.eos_token_id is not None:
            ids.add(self.tokenizer.eos_token_id)
        return ids

    # --------------------------------------------------------------- generation

    def generate(self, requests: list[Request]) -> list[Completion]:
        """Generate one completion per request, in order, ``batch_size`` at a time."""
        out: list[Completion] = []
        for i in range(0, len(requests), self.batch_size):
            out.extend(self._generate_batch(requests[i:i + self.batch_size]))
        return out

    def _generate_batch(self, requests: list[Request]) -> list[Completion]:
        keys = [r.key for r in requests]
        return self.generate_ids(*chat_prompt_ids(self.tokenizer, requests),
                                 keys=keys if all(k is not None for k in keys) else None)

    def generate_ids(self, prompts: list[list[int]], stops: list[tuple[str, ...]], *,
                     keys: list[Hashable] | None = None) -> list[Completion]:
        """Continue token-id prompts (one batch, left-padded); cut each at its stop strings.

        The learner calls this with prompts it built itself (chat turns and env observations as
        exact token ids), so what is trained on is exactly what was sampled.

        Args:
            prompts: token ids per row.
            stops: stop strings per row.
            keys: one hashable per row, naming the conversation it continues. Each row's KV
                cache is then kept after the call; in a later call a row whose prompt extends
                what was kept encodes only its new tokens (when that encodes fewer positions
                than starting afresh; rows with nothing kept are encoded whole beside them).
                :meth:`forget` drops kept rows; drop them before the weights change.
        """
        import torch

        from gymrl.backends.decode import decode

        tok, model = self.tokenizer, self.model
        reuse = [self._rows.reusable(k, p) for k, p in zip(keys, prompts, strict=True)] \
            if keys is not None else [0] * len(prompts)
        batch_seed = self._rng.getrandbits(63)
        devices = [model.device.index or 0] if model.device.type == "cuda" else []
        # A stop string of n characters spans at most ~4n tokens (byte-fallback tokenizers).
        windows = [4 * max((len(s) for s in row), default=0) + 4 for row in stops]

        def finished(row: int, ids: list[int]) -> bool:
            if not stops[row]:
                return False
            tail = tok.decode(ids[-windows[row]:], skip_special_tokens=False,
                              clean_up_tokenization_spaces=False)
            return any(s in tail for s in stops[row])

        def keep(row: int, b: int, cache: Any, attention: Any, generated: list[int]) -> None:
            self._rows.keep(keys[row], list(prompts[row]) + generated[:-1], cache, b,
                            attention[b])

        with torch.random.fork_rng(devices=devices), torch.inference_mode():
            torch.manual_seed(batch_seed)
            cache, input_ids, attention = None, None, None
            shared = self._shared_head(prompts)
            if self._continuing_is_cheaper(prompts, reuse, shared):  # new tokens only
                cache, input_ids, attention = self._continued(keys, prompts, reuse)
            if cache is None:
                cache, input_ids, attention = self._fresh(prompts, shared)
            generated, logprobs = decode(
                model, input_ids, attention, cache, max_new_tokens=self.max_new_tokens,
                temperature=self.temperature, top_p=self.top_p, eos_ids=self._eos_ids,
                finished=finished, on_exit=keep if keys is not None else None)
        return [self._completion(generated[i], logprobs[i], stops[i], len(prompts[i]))
                for i in range(len(prompts))]

    def load_weights(self, model: Any) -> None:
        """Copy a transformers model's current weights into this backend's model, cast to its
        dtype (a LoRA adapter merged in first): a rollout copy of the learner, kept in step
        after each update. The KV caches kept for later turns were computed with the old
        weights, so they are dropped."""
        import torch

        own = dict(self.model.named_parameters())
        incoming = dict(merged_weights(model))
        if set(incoming) != set(own):
            raise BackendError(
                f"hf backend {self.target!r}: cannot load weights of another architecture "
                f"(names differ: {sorted(set(incoming) ^ set(own))[:4]})")
        with torch.no_grad():
            for name, weight in incoming.items():
                own[name].copy_(weight)  # bumps the version counters: packed layers repack
        self.forget()

    def sampling_state(self) -> Any:
        """Where the per-call seed stream stands (see ``base.sampling_stream_kept``)."""
        return self._rng.getstate()

    def set_sampling_state(self, state: Any) -> None:
        self._rng.setstate(state)

    def forget(self, keys: list[Hashable] | None = None) -> None:
        """Drop the KV caches kept for ``keys`` (all of them when ``None``)."""
        self._rows.forget(keys)

    def _shared_head(self, prompts: list[list[int]]) -> int:
        """How many leading tokens every prompt shares, if at least ``min_shared_prefix``
        (else 0): the system prompt, or a group's whole prompt, encoded once for all rows."""
        shared = _common_prefix_len(prompts) if len(prompts) > 1 else 0
        return shared if shared >= self.min_shared_prefix else 0

    def _continuing_is_cheaper(self, prompts: list[list[int]], reuse: list[int],
                               shared: int) -> bool:
        """Whether encoding each row's tokens after its kept cache (rows without one: all of
        their prompt), padded to the longest, costs fewer token positions than encoding the
        prompts afresh (their ``shared`` head once, then each row's rest)."""
        if not any(reuse):
            return False
        continued = len(prompts) * max(len(p) - n for p, n in zip(prompts, reuse, strict=True))
        return continued < shared + len(prompts) * (max(map(len, prompts)) - shared)

    def _fresh(self, prompts: list[list[int]], shared: int) -> tuple[Any, Any, Any]:
        """The batch with nothing cached but the rows' ``shared`` head, if they have one."""
        import torch

        from gymrl.backends import cascade
        from gymrl.backends.kvcache import growing_cache

        model, pad = self.model, self.tokenizer.pad_token_id
        # The shared head is encoded once; every row reads it from one copy (CascadeCache) or
        # gets a copy of its own. Each row's own rest follows it, padded in the middle
        # (masked), so positions stay those of an unpadded prompt.
        width = max(len(p) for p in prompts) - shared
        input_ids = torch.tensor(
            [list(p[:shared]) + [pad] * (width - len(p) + shared) + list(p[shared:])
             for p in prompts], device=model.device)
        attention = torch.tensor(
            [[1] * shared + [0] * (width - len(p) + shared) + [1] * (len(p) - shared)
             for p in prompts], device=model.device)
        if shared and cascade.supports(model, input_ids.shape[1] + self.max_new_tokens):
            # The rows read the shared head's keys and values from one copy.
            cache = cascade.CascadeCache(model)
            cache.prefill(input_ids[:1, :shared])
        else:
            cache = growing_cache(model.config)  # appends in place, no re-concatenation
            if shared:
                model(input_ids=input_ids[:1, :shared], cache=cache, use_cache=True,
                      logits_to_keep=1)
        if shared:
            cache.batch_repeat_interleave(len(prompts))
        return cache, input_ids, attention

    def _continued(self, keys: list[Hashable], prompts: list[list[int]],
                   reuse: list[int]) -> tuple[Any, Any, Any]:
        """The batch over kept rows: their caches left-padded to the longest (a row without
        one has only padding there), then each row's new tokens, left-padded too (the padding
        in the middle is masked)."""
        import torch

        model, pad = self.model, self.tokenizer.pad_token_id
        cache, kept = self._rows.batch(model.config, keys, reuse)
        if cache is None:
            return None, None, None
        new = [list(p[n:]) for p, n in zip(prompts, reuse, strict=True)]
        width = max(len(x) for x in new)
        input_ids = torch.tensor([[pad] * (kept + width - len(x)) + x for x in new],
                                 device=model.device)
        attention = torch.tensor(
            [[0] * (kept - n) + [1] * n + [0] * (width - len(x)) + [1] * len(x)
             for x, n in zip(new, reuse, strict=True)], device=model.device)
        return cache, input_ids, attention

    def _completion(
        self, ids: list[int], logprobs: list[float], stop: tuple[str, ...], prompt_tokens: int
    ) -> Completion:
        """Cut one row at EOS or its earliest stop string and build its Completion."""
        finish = "length"
        end = len(ids)
        for j, t in enumerate(ids):
            if t in self._eos_ids:
                end, finish = j + 1, "stop"
                break
        body = ids[:end - 1] if finish == "stop" else ids  # the text leaves EOS out
        text, hit = truncate_at_stop(self._decode(body), stop)
        if hit:
            finish = "stop"
            end = self._tokens_to_stop(body, stop)
        ids = ids[:end]
        return Completion(
            text=text,
            prompt_tokens=prompt_tokens,
            completion_tokens=len(ids),
            token_ids=ids,
            logprobs=logprobs[:end],
            finish_reason=finish,
        )

    def _tokens_to_stop(self, ids: list[int], stop: tuple[str, ...]) -> int:
        """The fewest leading tokens of ``ids`` whose text holds a stop string (binary search)."""
        lo, hi = 1, len(ids)
        while lo < hi:
            mid = (lo + hi) // 2
            if truncate_at_stop(self._decode(ids[:mid]), stop)[1]:
                hi = mid
            else:
                lo = mid + 1
        return lo

    def _decode(self, ids: list[int]) -> str:
        # Special tokens stay: a stop string may be one; EOS and padding are cut off before.
        return self.tokenizer.decode(ids, skip_special_tokens=False,
                                     clean_up_tokenization_spaces=False)

    def close(self) -> None:
        """Drop the model so its memory can be freed."""
        self.model = None
        self.tokenizer = None


def _common_prefix_len(rows: list[list[int]]) -> int:
    """Length of the longest head that every row shares; at least one token stays per row."""
    shortest = min(len(r) for r in rows)
    n = 0
    first = rows[0]
    while n < shortest - 1 and all(r[n] == first[n] for r in rows):
        n += 1
    return n
