"""Shared fixtures: a fresh plugin registry per test that builds one."""

from __future__ import annotations

import types

import pytest

from gymrl import plugins
from gymrl.plugins import PluginInfo, Registry


@pytest.fixture
def fresh_registry():
    """A registry loaded from the installed entry points, restored afterwards."""
    saved = plugins._registry
    reg = Registry()
    reg.load_entry_points()
    plugins.reset(reg)
    yield reg
    plugins._registry = saved


def fake_plugin(name: str, package: str = "gymrl-fake", **hooks) -> tuple[object, PluginInfo]:
    """A plugin module built from hook functions, and its stamp."""
    module = types.ModuleType(name)
    for hook_name, fn in hooks.items():
        setattr(module, hook_name, fn)
    return module, PluginInfo(name=name, module=name, package=package, version="9.9")
