"""keep_freed_memory: a freed large buffer is reused without faulting its pages in again."""

from __future__ import annotations

import resource
import subprocess
import sys

import pytest
from test_train import tiny_cfg

import gymrl.learner.train as train_module
from gymrl.learner.memory import keep_freed_memory
from gymrl.learner.train import Trainer, prepare_run

# Allocate, touch and free a 64 MiB buffer (above glibc's largest default mmap threshold, so
# glibc unmaps it on free) 5 times after a first round, counting the page faults of those 5.
REUSE = """
import resource, sys
import torch
from gymrl.learner.memory import keep_freed_memory
if sys.argv[1] == "keep":
    assert keep_freed_memory()
def faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
x = torch.ones(16 * 2**20)
del x
before = faults()
for _ in range(5):
    x = torch.ones(16 * 2**20)
    del x
print(faults() - before)
"""


def reuse_faults(mode: str) -> int:
    out = subprocess.run([sys.executable, "-c", REUSE, mode], capture_output=True, text=True,
                         check=True)
    return int(out.stdout.split()[-1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_a_freed_buffer_is_reused_without_page_faults():
    # By default glibc maps the buffer afresh each round and every page faults again (with 4
    # KiB pages: 5 x 16384). Kept, it comes back from the heap, already mapped; a small block
    # left in the freed space after the first round can make the heap grow once more (16384),
    # not every round. Relative, so huge or 64 KiB pages do not change the verdict.
    default, kept = reuse_faults("default"), reuse_faults("keep")
    assert default >= 5 * (64 * 2**20 // resource.getpagesize()) // 2
    assert kept * 2 < default


def test_it_is_idempotent():
    first = keep_freed_memory()
    assert keep_freed_memory() == first


def test_the_trainer_keeps_freed_memory(tiny_chat_model, tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(train_module, "keep_freed_memory", lambda: calls.append(1))
    Trainer(*prepare_run(tiny_cfg(tiny_chat_model, tmp_path)))
    assert calls == [1]
