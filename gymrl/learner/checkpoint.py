"""Checkpoints written atomically: a folder appears whole or not at all, ``latest`` names it."""

from __future__ import annotations

import json
import os
import random
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from gymrl.results import atomic_write_text, fsync_path


def trainable_state(model: Any) -> dict[str, Any]:
    """The parameters that train (a LoRA adapter, or every weight), detached copies."""
    return {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}


def assign(model: Any, weights: dict[str, Any]) -> None:
    """Copy ``weights`` (named like :func:`trainable_state`'s) into the model's parameters."""
    import torch

    params = dict(model.named_parameters())
    with torch.no_grad():
        for name, value in weights.items():
            params[name].copy_(value)


def rng_state(stream: Any = None) -> dict[str, Any]:
    """The global generators' states, and under ``extra`` the rollout backend's sampling
    stream (its ``sampling_state()``: hf's seed generator state, vLLM's call count)."""
    import torch

    return {"python": random.getstate(), "numpy": np.random.get_state(),
            "torch": torch.get_rng_state(), "extra": stream}


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore the global generators (the sampling stream is the backend's to restore)."""
    import torch

    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])


def save(run_dir: Path, step: int, *, model: Any, optimizer: Any, reward: Any,
         rng: dict[str, Any], extra: dict[str, Any], keep: int = 2) -> Path:
    """Write checkpoint ``step`` and point ``latest`` at it; keep the last ``keep`` and step 0."""
    import torch

    root = run_dir / "checkpoints"
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".step-{step}.", dir=root))
    torch.save(trainable_state(model), tmp / "weights.pt")
    torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
    torch.save(rng, tmp / "rng.pt")
    (tmp / "reward_state.json").write_text(json.dumps(reward.state_dict()))
    (tmp / "trainer_state.json").write_text(json.dumps({"step": step, **extra}))
    fsync_path(tmp)
    final = root / f"step-{step}"
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    fsync_path(root, files=False)  # the rename itself
    atomic_write_text(root / "latest", final.name + "\n")
    # Step 0 (the policy after SFT) is always kept: ``fork=`` starts new runs from it.
    steps = sorted((int(p.name.split("-")[1]) for p in root.glob("step-*")
                    if p.name != "step-0"), reverse=True)
    for old in steps[keep:]:
        shutil.rmtree(root / f"step-{old}", ignore_errors=True)
    return final


def latest(run_dir: Path) -> Path | None:
    pointer = run_dir / "checkpoints" / "latest"
    if not pointer.is_file():
        return None
    path = run_dir / "checkpoints" / pointer.read_text().strip()
    return path if path.is_dir() else None


def load(path: Path, *, model: Any, optimizer: Any, reward: Any) -> dict[str, Any]:
    """Restore a checkpoint into ``model``/``optimizer``/``reward``; return its trainer state."""
    import torch

    weights = torch.load(path / "weights.pt", weights_only=True)
    missing = sorted(set(weights) - {name for name, _ in model.named_parameters()})
    if missing:
        raise ValueError(f"checkpoint {path} has weights the model lacks: {missing[:3]}")
    assign(model, weights)
    # The implementation (fused or not) is this run's choice, not the checkpoint's: a fork may
    # change learner.optim, and load_state_dict would put the saved flags back.
    kernels = [{k: g.get(k) for k in ("fused", "foreach")} for g in optimizer.param_groups]
    optimizer.load_state_dict(torch.load(path / "optimizer.pt", weights_only=True))
    for group, kernel in zip(optimizer.param_groups, kernels, strict=True):
        group.update(kernel)
    reward.load_state_dict(json.loads((path / "reward_state.json").read_text()))
    state = json.loads((path / "trainer_state.json").read_text())
    state["rng"] = torch.load(path / "rng.pt", weights_only=False)
    return state
