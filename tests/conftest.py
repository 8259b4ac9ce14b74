"""Shared fixtures: a fresh plugin registry per test that builds one."""

from __future__ import annotations

import pytest

from gymrl import plugins
from gymrl.plugins import Registry


@pytest.fixture
def fresh_registry():
    """A registry loaded from the installed entry points, restored afterwards."""
    saved = plugins._registry
    reg = Registry()
    reg.load_entry_points()
    plugins.reset(reg)
    yield reg
    plugins._registry = saved
