"""The hf backend on a tiny Llama trained here in seconds: no downloads, no network."""

from __future__ import annotations

import math
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from gymrl.backends.base import Request
from gymrl.backends.hf import HFBackend
from gymrl.errors import BackendError, ConfigError
from gymrl.learner.train import cpu_has_bf16_matmul

TEMPLATE = (
    "{% for m in messages %}{{ m['role'] }} : {{ m['content'] }} [SEP] {% endfor %}"
    "{% if add_generation_prompt %}assistant :{% endif %}"
)
QA = [
    ("capital of france",
     "<think> france capital </think> <search> capital france </search> <answer> paris </answer>"),
    ("capital of italy please",
     "<think> italy capital </think> <search> capital italy </search> <answer> rome </answer>"),
    ("what is two plus two", "<think> add two two </think> <answer> four </answer>"),
    ("who wrote hamlet tell me now",
     "<think> hamlet author </think> <search> hamlet </search> <answer> shakespeare </answer>"),
]


def ask(question: str, stop: tuple[str, ...] = ()) -> Request:
    return Request(messages=[{"role": "user", "content": question}], stop=stop)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A word-level tokenizer and a 2-layer Llama, trained briefly on the QA pairs above."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    corpus = [f"user : {q} [SEP] assistant : {a}" for q, a in QA]
    raw = Tokenizer(models.WordLevel(unk_token="[UNK]"))
    raw.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    raw.train_from_iterator(
        corpus, trainers.WordLevelTrainer(special_tokens=["[PAD]", "[UNK]", "[BOS]", "[EOS]"]))
    tok = PreTrainedTokenizerFast(tokenizer_object=raw, pad_token="[PAD]", unk_token="[UNK]",
                                  bos_token="[BOS]", eos_token="[EOS]")
    tok.chat_template = TEMPLATE

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=128,
        pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id)
    model = LlamaForCausalLM(config)
    # Train just enough that greedy decoding follows the QA format and ends with EOS, so the
    # stop and EOS paths run on realistic text; sampling at high temperature still varies.
    rows = [tok(text + " [EOS]")["input_ids"] for text in corpus]
    width = max(map(len, rows))
    x = torch.tensor([r + [tok.pad_token_id] * (width - len(r)) for r in rows])
    labels = x.masked_fill(x == tok.pad_token_id, -100)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(100):
        loss = model(input_ids=x, labels=labels).loss
        opt.zero_grad()
        loss.backward()
        opt.step()

    path = tmp_path_factory.mktemp("tiny-llama")
    tok.save_pretrained(path)
    model.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def greedy(model_dir: Path) -> HFBackend:
    return HFBackend(str(model_dir), temperature=0, max_new_tokens=24, batch_size=8)


def test_batch_with_left_padding_matches_single_requests(greedy: HFBackend) -> None:
    requests = [ask("capital of france"), ask("who wrote hamlet tell me now"),
                ask("what is two plus two")]
    batch = greedy.generate(requests)
    assert len({c.prompt_tokens for c in batch}) == 3  # really different lengths: padding used
    for request, got in zip(requests, batch, strict=True):
        alone = greedy.generate([request])[0]
        assert got.text == alone.text
        assert got.token_ids == alone.token_ids
        assert got.prompt_tokens == alone.prompt_tokens
        assert got.logprobs == pytest.approx(alone.logprobs, abs=1e-4)


def test_batches_smaller_than_the_request_list_keep_order(model_dir: Path,
                                                          greedy: HFBackend) -> None:
    requests = [ask(q) for q, _ in QA] * 2
    small = HFBackend(str(model_dir), temperature=0, max_new_tokens=24, batch_size=3)
    assert [c.text for c in small.generate(requests)] == [
        c.text for c in greedy.generate(requests)]


def test_eos_ends_the_turn_and_stays_out_of_the_text(greedy: HFBackend) -> None:
    done = greedy.generate([ask("capital of france")])[0]
    assert done.finish_reason == "stop"
    assert "[EOS]" not in done.text
    assert done.token_ids[-1] == greedy.tokenizer.eos_token_id
    short = HFBackend(greedy.target, temperature=0, max_new_tokens=3).generate(
        [ask("capital of france")])[0]
    assert short.finish_reason == "length"
    assert short.completion_tokens == 3
    assert done.text.startswith(short.text)


@pytest.mark.parametrize("cut", ["whole_token", "inside_a_token"])
def test_stop_string_cuts_exactly_after_it(greedy: HFBackend, cut: str) -> None:
    full = greedy.generate([ask("capital of france")])[0]
    words = full.text.split()
    assert len(words) >= 4, full.text
    # A stop taken from the model's own output, so the test holds whatever the model says.
    stop = words[2] if cut == "whole_token" else words[3][1:-1]
    end = full.text.index(stop) + len(stop)
    got = greedy.generate([ask("capital of france", stop=("never-emitted", stop))])[0]
    assert got.text == full.text[:end]
    assert got.text.endswith(stop)
    assert got.finish_reason == "stop"
    assert got.token_ids == full.token_ids[:len(got.token_ids)]
    # The ids run up to and including the token that completes the stop, no further.
    decoded = greedy.tokenizer.decode(got.token_ids)
    assert stop in decoded
    assert stop not in greedy.tokenizer.decode(got.token_ids[:-1])


def test_each_request_stops_at_its_own_stop_strings(greedy: HFBackend) -> None:
    full = greedy.generate([ask("capital of france")])[0].text
    stop = full.split()[2]
    got = greedy.generate([ask("capital of france", stop=(stop,)), ask("capital of france")])
    assert got[0].text == full[:full.index(stop) + len(stop)]
    assert got[1].text == full


def test_token_ids_and_logprobs_line_up(greedy: HFBackend) -> None:
    for c in greedy.generate([ask(q) for q, _ in QA]):
        assert c.completion_tokens == len(c.token_ids) == len(c.logprobs) > 0
        assert all(math.isfinite(lp) and lp <= 0 for lp in c.logprobs)
        assert c.prompt_tokens > 0


@pytest.mark.parametrize("temperature", [1.0, 2.5])
def test_sampled_logprobs_are_those_of_the_sampling_distribution(model_dir: Path,
                                                                 temperature: float) -> None:
    import torch

    backend = HFBackend(str(model_dir), temperature=temperature, max_new_tokens=16, seed=1)
    request = ask("capital of italy please")
    got = backend.generate([request])[0]
    tok = backend.tokenizer
    prompt = tok.apply_chat_template(request.messages, add_generation_prompt=True,
                                     tokenize=False)
    prompt_ids = tok(prompt, add_special_tokens=False)["input_ids"]
    ids = torch.tensor([prompt_ids + got.token_ids])
    with torch.no_grad():
        logits = backend.model(input_ids=ids).logits[0, len(prompt_ids) - 1:-1]
    expected = torch.log_softmax(logits / temperature, dim=-1).gather(
        -1, torch.tensor(got.token_ids)[:, None]).squeeze(-1)
    assert got.logprobs == pytest.approx(expected.tolist(), abs=1e-4)


@pytest.mark.parametrize("dtype", ["float32", pytest.param("bfloat16", marks=pytest.mark.skipif(
    not cpu_has_bf16_matmul(), reason="bf16 is emulated on this CPU"))])
def test_packed_linears_sample_what_the_plain_model_does(model_dir: Path, dtype: str) -> None:
    import torch

    requests = [ask(q) for q, _ in QA]
    plain, packed = (HFBackend(str(model_dir), temperature=1.0, max_new_tokens=16, seed=3,
                               dtype=dtype, pack_linear=pack) for pack in (False, True))
    assert all(hasattr(m, "packed") for m in packed.model.modules()
               if isinstance(m, torch.nn.Linear))
    a, b = plain.generate(requests), packed.generate(requests)
    assert [c.token_ids for c in a] == [c.token_ids for c in b]
    for x, y in zip(a, b, strict=True):
        assert x.logprobs == pytest.approx(y.logprobs, abs=1e-5)


def test_linears_packed_only_within_the_block(model_dir: Path) -> None:
    """A model that also trains packs for a block of generation: inside, every linear layer
    multiplies through its packed copy, to the plain result; after it (an error included) the
    layers are plain again (autograd works) and a forward set on an instance is back."""
    import torch
    from transformers import AutoModelForCausalLM

    from gymrl.backends.packed import linears_packed

    model = AutoModelForCausalLM.from_pretrained(model_dir)
    linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    hooked = linears[0]
    hooked.forward = lambda x, layer=hooked: torch.nn.Linear.forward(layer, x)
    x = torch.randn(3, 2, model.config.hidden_size)
    layer = model.model.layers[0].self_attn.q_proj
    plain = layer(x)
    ran: set[str] = set()

    with pytest.raises(RuntimeError, match="in the block"), linears_packed(model):
        assert all("packed" in m.__dict__ for m in linears)
        with torch.no_grad(), torch.profiler.profile() as profile:
            assert torch.allclose(layer(x), plain, atol=1e-5)
        ran = {event.key for event in profile.key_averages()}
        raise RuntimeError("an error in the block")
    assert "mkldnn::_linear_pointwise" in ran and "aten::linear" not in ran  # the packed kernel
    assert not any("packed" in m.__dict__ for m in linears)
    assert [m for m in linears if "forward" in m.__dict__] == [hooked]
    out = layer(x.requires_grad_())
    out.sum().backward()
    assert layer.weight.grad is not None and torch.equal(out, plain)


@pytest.mark.parametrize(("shape", "bias"), [((5, 8), True), ((2, 3, 8), False)])
def test_packed_linears_train_as_plain_ones(shape: tuple[int, ...], bias: bool) -> None:
    """Under autograd a packed layer's product and gradients (input, weight, bias) are the
    plain layer's; a frozen weight gets none, and the input still does."""
    import copy

    import torch

    from gymrl.backends.packed import pack_linears

    torch.manual_seed(0)
    plain = torch.nn.Sequential(torch.nn.Linear(8, 16, bias=bias), torch.nn.Linear(16, 4))
    packed = copy.deepcopy(plain)
    pack_linears(packed)
    x = torch.randn(*shape)
    for model in (plain, packed):
        model.zero_grad()
        xi = x.clone().requires_grad_()
        out = model(xi)
        (out * torch.arange(out.numel()).reshape(out.shape)).sum().backward()
        model.out, model.x_grad = out.detach(), xi.grad
    torch.testing.assert_close(packed.out, plain.out, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(packed.x_grad, plain.x_grad, rtol=1e-5, atol=1e-5)
    for a, b in zip(packed.parameters(), plain.parameters(), strict=True):
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-5, atol=1e-5)
    packed[0].requires_grad_(False)
    packed.zero_grad(set_to_none=True)
    xi = x.clone().requires_grad_()
    packed(xi).sum().backward()
    assert packed[0].weight.grad is None and xi.grad is not None


def test_packed_linears_follow_every_change_of_their_weights() -> None:
    """A packed copy is made again on the first call after its weight changed: an optimizer
    step (a fused one through ``repack_after``), ``load_state_dict``, a new tensor assigned to
    ``.data``."""
    import torch

    from gymrl.backends.packed import pack_linears, repack_after

    torch.manual_seed(0)
    layer = torch.nn.Linear(8, 8)
    pack_linears(layer)
    x = torch.randn(4, 8)

    def check() -> None:
        with torch.no_grad():
            torch.testing.assert_close(layer(x), torch.nn.functional.linear(
                x, layer.weight, layer.bias), rtol=1e-5, atol=1e-5)

    check()
    for fused in (False, True):
        optimizer = torch.optim.AdamW(layer.parameters(), lr=0.5, fused=fused)
        if fused:  # writes the weights without bumping their version counters
            repack_after(optimizer, layer)
        layer(x).sum().backward()
        optimizer.step()
        check()
    layer.load_state_dict({"weight": torch.randn(8, 8), "bias": torch.randn(8)})
    check()
    layer.weight.data = torch.randn(8, 8)
    check()


def test_packed_linears_are_packed_again_when_the_weights_change(model_dir: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM

    other = AutoModelForCausalLM.from_pretrained(model_dir)
    torch.manual_seed(0)
    with torch.no_grad():
        for p in other.parameters():
            p.add_(0.05 * torch.randn_like(p))
    requests = [ask(q) for q, _ in QA]
    packed = HFBackend(str(model_dir), temperature=0, max_new_tokens=12, pack_linear=True)
    before = packed.generate(requests)
    packed.load_weights(other)
    reference = HFBackend(str(model_dir), temperature=0, max_new_tokens=12)
    reference.load_weights(other)
    after, expected = packed.generate(requests), reference.generate(requests)
    assert [c.token_ids for c in after] == [c.token_ids for c in expected]
    for x, y in zip(after, expected, strict=True):
        assert x.logprobs == pytest.approx(y.logprobs, abs=1e-5)
    assert [c.logprobs for c in after] != [c.logprobs for c in before]


def test_same_seed_same_samples(model_dir: Path) -> None:
    requests = [ask(q) for q, _ in QA]

    def sample(seed: int) -> list[list[int]]:
        backend = HFBackend(str(model_dir), temperature=5.0, max_new_tokens=12, seed=seed)
        return [c.token_ids for c in backend.generate(requests)]

    assert sample(7) == sample(7)
    assert sample(7) != sample(8)


def test_the_global_torch_rng_is_left_alone(model_dir: Path) -> None:
    import torch

    backend = HFBackend(str(model_dir), temperature=1.0, max_new_tokens=4)
    torch.manual_seed(123)
    before = torch.rand(3)
    torch.manual_seed(123)
    backend.generate([ask("capital of france")])
    assert torch.equal(torch.rand(3), before)


def test_missing_local_path_fails_with_its_name() -> None:
    with pytest.raises(BackendError, match="/tmp/does/not/exist") as info:
        HFBackend("/tmp/does/not/exist")
    assert "local model directory" in str(info.value)


def test_uncached_hub_id_fails_fast_when_offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(BackendError, match="nonexistent-org/nonexistent-model") as info:
        HFBackend("nonexistent-org/nonexistent-model")
    assert "offline" in str(info.value)
    assert "local model directory" in str(info.value)


def test_uncached_hub_id_fails_fast_when_the_hub_is_unreachable(
        monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as s:  # a port nothing listens on: connection refused at once
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    import huggingface_hub.constants

    # The hub library reads HF_HUB_OFFLINE once, at import: turn it off for this test only.
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    with pytest.raises(BackendError, match="nonexistent-org/nonexistent-model") as info:
        HFBackend("nonexistent-org/nonexistent-model")
    assert "unreachable" in str(info.value)
    assert f"127.0.0.1:{port}" in str(info.value)


def test_model_without_chat_template_is_refused(model_dir: Path, tmp_path: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    tok.chat_template = None
    tok.save_pretrained(tmp_path)
    (tmp_path / "chat_template.jinja").unlink(missing_ok=True)
    AutoModelForCausalLM.from_pretrained(model_dir).save_pretrained(tmp_path)
    with pytest.raises(BackendError, match="chat template"):
        HFBackend(str(tmp_path))


@pytest.mark.parametrize("option", [{"temperature": -1}, {"top_p": 0}, {"batch_size": 0},
                                    {"max_new_tokens": 0}, {"dtype": "float8"},
                                    {"pack_linear": True, "device": "cuda"}])
def test_bad_options_are_config_errors(option: dict) -> None:
    with pytest.raises(ConfigError):
        HFBackend("/unused", **option)


def test_importing_the_backends_does_not_import_torch() -> None:
    code = (
        "import sys, gymrl\n"
        "heavy = ('torch', 'transformers', 'openai')\n"
        "before = {m for m in heavy if m in sys.modules}\n"
        "import gymrl.backends.hf, gymrl.backends.openai_compat\n"
        "print(sorted({m for m in heavy if m in sys.modules} - before))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=Path(__file__).parents[2])
    assert out.stdout.strip() == "[]"


def test_router_episodes_with_the_hf_policy(model_dir: Path, tmp_path: Path) -> None:
    """The real path end to end: batched hf generation drives router episodes."""
    from gymrl.cli import main
    from gymrl.evaluate import run_episodes
    from gymrl.make import make_env

    backend = HFBackend(str(model_dir), temperature=0, max_new_tokens=12, batch_size=4)
    records = run_episodes(lambda: make_env("router"), backend, episodes=4, batch_size=4)
    assert len(records) == 4
    for episode, _ in records:
        assert episode.done and "format" in episode.rewards
        for turn in episode.policy_turns:
            assert turn.token_ids and len(turn.logprobs) == len(turn.token_ids)
    code = main(["eval", "env=router", f"policy=hf:{model_dir}", "policy.max_new_tokens=8",
                 "episodes=2", f"output_dir={tmp_path}", "progress=false"])
    assert code == 0 and (tmp_path / "results.json").is_file()


def test_shared_prompt_head_is_encoded_once_with_the_same_result(model_dir: Path) -> None:
    """Rows sharing a long head get a copied KV cache; greedy output is unchanged."""
    plain = HFBackend(str(model_dir), temperature=0, max_new_tokens=12,
                      min_shared_prefix=10**9)
    shared = HFBackend(str(model_dir), temperature=0, max_new_tokens=12, min_shared_prefix=4)
    tok = plain.tokenizer
    head = "capital of france capital of italy please what is two plus two"
    prompts = [tok(f"user : {head} {tail} [SEP] assistant :")["input_ids"]
               for tail in ("who wrote hamlet", "capital of italy please", "two")]
    stops = [("</answer>",)] * 3
    a, b = plain.generate_ids(prompts, stops), shared.generate_ids(prompts, stops)
    assert [c.token_ids for c in a] == [c.token_ids for c in b]
    for x, y in zip(a, b, strict=True):
        assert x.logprobs == pytest.approx(y.logprobs, abs=1e-4)


def test_later_turns_reuse_each_rows_kv_cache_with_the_same_result(model_dir: Path) -> None:
    """With keys, a row's next turn encodes only its new tokens; greedy output and log-probs
    match encoding the whole conversation again."""
    import torch

    backend = HFBackend(str(model_dir), temperature=0, max_new_tokens=6, min_shared_prefix=4)
    tok = backend.tokenizer
    heads = ["capital of france", "who wrote hamlet please", "two"]
    prompts = [tok(f"user : {q} [SEP] assistant :")["input_ids"] for q in heads]
    stops = [()] * 3
    first = backend.generate_ids(prompts, stops, keys=["a", "b", "c"])
    assert len(backend._rows) == 3
    # Each row's next prompt: its last prompt, what it wrote, and a reply of varying length.
    replies = ["what is two plus two", "capital", "who wrote hamlet capital of italy"]
    later = [p + c.token_ids + tok(f"[SEP] user : {r} [SEP] assistant :")["input_ids"]
             for p, c, r in zip(prompts, first, replies, strict=True)]
    fed: list[int] = []
    hook = backend.model.model.embed_tokens.register_forward_hook(
        lambda module, args, out: fed.append(args[0].shape[-1]))
    try:
        kept = backend.generate_ids(later, stops, keys=["a", "b", "c"])
    finally:
        hook.remove()
    plain = HFBackend(str(model_dir), temperature=0, max_new_tokens=6,
                      min_shared_prefix=10**9).generate_ids(later, stops)
    assert [c.token_ids for c in kept] == [c.token_ids for c in plain]
    for x, y in zip(kept, plain, strict=True):
        assert x.logprobs == pytest.approx(y.logprobs, abs=1e-4)
    # The prefill fed only the new tokens: the longest new part, not the longest prompt.
    new = max(len(t) - len(p) - len(c.token_ids) + 1
              for t, p, c in zip(later, prompts, first, strict=True))
    assert fed[0] == new < max(map(len, later))
    # A batch of a continued row and a new one (an eval slot refilled with a new episode):
    # the new row is encoded whole beside the other's new tokens.
    third = [later[0] + kept[0].token_ids + tok("[SEP] user : two [SEP] assistant :")["input_ids"],
             tok("user : two [SEP] assistant :")["input_ids"]]
    assert backend._continuing_is_cheaper(third, [backend._rows.reusable("a", third[0]), 0],
                                          backend._shared_head(third))
    mixed = backend.generate_ids(third, [()] * 2, keys=["a", "z"])
    fresh = HFBackend(str(model_dir), temperature=0, max_new_tokens=6,
                      min_shared_prefix=10**9).generate_ids(third, [()] * 2)
    assert [c.token_ids for c in mixed] == [c.token_ids for c in fresh]
    backend.forget(["a", "b", "z"])
    assert len(backend._rows) == 1
    # A row whose prompt no longer extends what was kept is encoded from scratch.
    assert backend._rows.reusable("c", [0] + later[2]) == 0
    assert torch.is_tensor(backend._rows._rows["c"][1][0][0])


def test_eval_episodes_reuse_kv_caches_with_the_same_result(model_dir: Path,
                                                            monkeypatch: pytest.MonkeyPatch):
    """``run_episodes`` keys each request by its episode: later turns continue the episode's
    KV cache, also in batches where a finished episode's slot took a new one (mixed rows);
    the episodes are those of encoding every turn afresh, and no cache is left behind."""
    from gymrl.evaluate import run_episodes
    from gymrl.make import make_env

    def texts(backend: HFBackend) -> list[list[str]]:
        records = run_episodes(lambda: make_env("router", max_calls=2), backend, episodes=6,
                               seed=3, batch_size=4)
        return [[t.text for t in e.policy_turns] for e, _ in records]

    kept = HFBackend(str(model_dir), temperature=0, max_new_tokens=8)
    calls: list[list[int]] = []
    original = HFBackend._continued

    def spy(self, keys, prompts, reuse):
        calls.append(list(reuse))
        return original(self, keys, prompts, reuse)

    monkeypatch.setattr(HFBackend, "_continued", spy)
    with_cache = texts(kept)
    assert len(kept._rows) == 0
    assert calls and all(all(reuse) for reuse in calls)  # later turns continued their caches
    monkeypatch.setattr(HFBackend, "_continuing_is_cheaper", lambda *a: False)
    assert texts(HFBackend(str(model_dir), temperature=0, max_new_tokens=8)) == with_cache
    assert max(len(t) for t in with_cache) > 1


def test_decode_loop_matches_transformers_generate_greedy(model_dir: Path) -> None:
    """Rows leave the batch as they finish; what each row generates is unchanged."""
    import torch
    from transformers import DynamicCache

    from gymrl.backends.decode import decode

    backend = HFBackend(str(model_dir), temperature=0, max_new_tokens=10)
    tok, model = backend.tokenizer, backend.model
    prompts = [tok(f"user : {q} [SEP] assistant :")["input_ids"]
               for q in ("capital of france", "who wrote hamlet please", "two")]
    width = max(map(len, prompts))
    ids = torch.tensor([[tok.pad_token_id] * (width - len(p)) + p for p in prompts])
    attention = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts])
    stop_after = {0: 3, 1: 10, 2: 6}  # rows finish at different steps
    with torch.inference_mode():
        got, logps = decode(model, ids, attention, DynamicCache(config=model.config),
                            max_new_tokens=10, temperature=0, top_p=1.0, eos_ids=set(),
                            finished=lambda row, gen: len(gen) >= stop_after[row])
        reference = model.generate(input_ids=ids, attention_mask=attention, do_sample=False,
                                   max_new_tokens=10, eos_token_id=None,
                                   pad_token_id=tok.pad_token_id)[:, width:]
    for row, n in stop_after.items():
        assert got[row] == reference[row, :n].tolist()
        assert len(logps[row]) == n and all(lp <= 0 for lp in logps[row])


def test_top_p_filter_keeps_the_nucleus() -> None:
    import torch

    from gymrl.backends.decode import top_p_filter

    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    kept = torch.isfinite(top_p_filter(logits, 0.8))[0].tolist()
    assert kept == [True, True, False, False]
    assert torch.isfinite(top_p_filter(logits, 0.01))[0].tolist() == [True, False, False, False]


def test_sample_draws_each_token_with_its_probability() -> None:
    import torch

    from gymrl.backends.decode import sample

    probs = torch.tensor([0.5, 0.3, 0.0, 0.15, 0.05, 0.0])
    n = 40_000
    logp = torch.log(probs).expand(n, -1)
    torch.manual_seed(0)
    drawn = sample(logp)
    counts = torch.bincount(drawn, minlength=len(probs)).double()
    assert counts[probs == 0].sum() == 0  # probability 0 (top-p's cut) is never drawn
    sigma = (n * probs * (1 - probs)).sqrt()
    assert bool(((counts - n * probs).abs() <= 5 * sigma + 1e-9).all()), counts.tolist()
    torch.manual_seed(0)
    assert torch.equal(sample(logp), drawn)
    # all the mass on the first or on the last entry: always that entry
    edges = torch.log(torch.tensor([[1.0, 0, 0], [0, 0, 1.0]])).repeat(500, 1)
    assert sample(edges).tolist() == [0, 2] * 500


def test_hf_smollm2_names_the_embedded_model(model_dir: Path, monkeypatch) -> None:
    """``policy=hf:smollm2`` loads what ``model=smollm2`` trains (converted once, cached)."""
    import gymrl.backends.hf as hf

    asked = []
    monkeypatch.setattr(hf, "resolve_model", lambda spec: asked.append(spec) or str(model_dir))
    backend = HFBackend("smollm2", max_new_tokens=4, temperature=0)
    assert asked == ["smollm2"]
    assert backend.name == "hf:smollm2" and backend.target == str(model_dir)
