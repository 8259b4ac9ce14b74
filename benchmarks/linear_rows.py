"""How fast the policy's own linear layers run for a given number of rows: decoding's ceiling.

A decoding step multiplies every weight matrix of the model by one new token per row, so
with few rows it reads ~0.5 GB of fp32 weights (SmolLM2-135M) to do little arithmetic with
them: its speed is set by how fast the weights stream in, not by the matmul ceiling that
``grpo_vs_trl.py`` measures on 2048x2048 matrices. This runs every ``nn.Linear`` of the model
(``lm_head`` included), in order, on inputs of ``rows`` rows, as one decoding step does, and
reports GFLOP/s, the weight bytes read per second, and the fraction of the fp32 matmul
ceiling, per row count and dtype. The weights do not fit the cache, so each pass reads them
from memory, as decoding does. Beside it, ``stream_gb_per_s``: the same matrices only summed,
one after another (a read of the same bytes with next to no arithmetic), which is how fast
this machine's memory hands them over when a kernel streams them well.

Each row count runs twice: through the layers as they are (``rates``: MKL, as the update
runs them) and through the packed copies generation uses on the CPU (``packed_rates``:
``gymrl.backends.hf.linears_packed``, oneDNN on weights reordered once; packing is not timed).

Usage::

    python benchmarks/linear_rows.py                     # rows 1 8 32 64 256, fp32 and bf16
    python benchmarks/linear_rows.py --rows 8 32 --dtypes float32

Writes ``benchmarks/results/linear_rows.json`` and ``linear_rows.png``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from grpo_vs_trl import matmul_ceiling  # noqa: E402

from gymrl.results import atomic_write_json, versions  # noqa: E402

ROOT = Path(__file__).resolve().parent


def linear_rate(model: Any, rows: int, repeats: int = 3) -> dict[str, float]:
    """One pass over every linear layer of ``model`` with ``rows``-row inputs, timed."""
    import torch

    layers = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    dtype = layers[0].weight.dtype
    inputs = {n: torch.randn(rows, n, dtype=dtype) for n in {m.in_features for m in layers}}
    flops = sum(2 * rows * m.in_features * m.out_features for m in layers)
    weight_bytes = sum(m.weight.numel() * m.weight.element_size() for m in layers)
    with torch.inference_mode():
        for m in layers:  # warm-up
            m(inputs[m.in_features])
        start = time.perf_counter()
        for _ in range(repeats):
            for m in layers:
                m(inputs[m.in_features])
        seconds = (time.perf_counter() - start) / repeats
    return {"rows": rows, "ms_per_pass": seconds * 1e3, "gflops": flops / seconds / 1e9,
            "weight_gb_per_s": weight_bytes / seconds / 1e9, "weight_mb": weight_bytes / 1e6}


def stream_rate(model: Any, repeats: int = 3) -> float:
    """GB/s at which summing every linear layer's weights, in order, reads them."""
    import torch

    weights = [m.weight.detach() for m in model.modules() if isinstance(m, torch.nn.Linear)]
    weight_bytes = sum(w.numel() * w.element_size() for w in weights)
    for w in weights:  # warm-up
        w.sum()
    start = time.perf_counter()
    for _ in range(repeats):
        for w in weights:
            w.sum()
    return weight_bytes * repeats / (time.perf_counter() - start) / 1e9


def plot(report: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for key, kernel in (("rates", "plain"), ("packed_rates", "packed")):
        for dtype, rows in report.get(key, {}).items():
            ax.plot([r["rows"] for r in rows], [r["gflops"] for r in rows], marker="o",
                    linestyle="-" if kernel == "packed" else ":", label=f"{dtype}, {kernel}")
    for dtype, ceiling in report["matmul_ceiling_gflops"].items():
        ax.axhline(ceiling, linestyle="--", linewidth=1, color="grey")
        ax.annotate(f"{dtype} matmul ceiling", (1, ceiling), fontsize=8, va="bottom")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("rows (sequences decoded together)")
    ax.set_ylabel("GFLOP/s over the model's linear layers")
    ax.set_title("SmolLM2 linear layers: decoding's ceiling by batch")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    import torch
    from transformers import AutoModelForCausalLM

    from gymrl.backends.packed import linears_packed
    from gymrl.learner.model import resolve_model
    from gymrl.learner.train import cpu_has_bf16_matmul

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="smollm2")
    parser.add_argument("--rows", type=int, nargs="+", default=[1, 8, 32, 64, 256])
    parser.add_argument("--dtypes", nargs="+", default=["float32", "bfloat16"])
    parser.add_argument("--output", type=Path, default=ROOT / "results" / "linear_rows.json")
    parser.add_argument("--no-plot", action="store_true")
    args = parser.parse_args(argv)
    report: dict[str, Any] = {"model": args.model, "torch_threads": torch.get_num_threads(),
                              "cpu_capability": torch.backends.cpu.get_cpu_capability(),
                              "matmul_ceiling_gflops": {}, "rates": {}, "packed_rates": {},
                              "stream_gb_per_s": {},
                              "versions": versions()}
    for dtype in args.dtypes:
        if dtype == "bfloat16" and not cpu_has_bf16_matmul():
            print("no avx512_bf16/AMX on this CPU: skipping bfloat16 (emulated, hours)")
            continue
        readings = [matmul_ceiling(dtype) / 1e9 for _ in range(3)]
        model = AutoModelForCausalLM.from_pretrained(resolve_model(args.model),
                                                     dtype=getattr(torch, dtype))
        rates = [linear_rate(model, rows) for rows in args.rows]
        with linears_packed(model):
            packed = [linear_rate(model, rows) for rows in args.rows]
        # The best of readings before and after: a slow moment would flatter every fraction.
        readings.append(matmul_ceiling(dtype) / 1e9)
        ceiling = report["matmul_ceiling_gflops"][dtype] = max(readings)
        report.setdefault("matmul_ceiling_readings", {})[dtype] = readings
        stream = report["stream_gb_per_s"][dtype] = stream_rate(model)
        print(f"{dtype}: the weights summed stream in at {stream:.1f} GB/s", flush=True)
        for kernel, rows in (("plain", rates), ("packed", packed)):
            for r in rows:
                r["fraction_of_ceiling"] = r["gflops"] / ceiling
                r["fraction_of_stream"] = r["weight_gb_per_s"] / stream
                print(f"{dtype} {kernel} rows={r['rows']}: {r['gflops']:.0f} GFLOP/s "
                      f"({r['fraction_of_ceiling']:.0%} of {ceiling:.0f}), weights read at "
                      f"{r['weight_gb_per_s']:.1f} GB/s", flush=True)
        report["rates"][dtype], report["packed_rates"][dtype] = rates, packed
        del model
    atomic_write_json(args.output, report)
    if not args.no_plot:
        plot(report, args.output.with_suffix(".png"))
    return report


if __name__ == "__main__":
    main()
