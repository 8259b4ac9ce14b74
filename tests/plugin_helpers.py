"""Helpers for plugin tests: build a plugin module from hook functions."""

from __future__ import annotations

import types

from gymrl.plugins import PluginInfo


def fake_plugin(name: str, package: str = "gymrl-fake", **hooks) -> tuple[object, PluginInfo]:
    """A plugin module built from hook functions, and its stamp."""
    module = types.ModuleType(name)
    for hook_name, fn in hooks.items():
        setattr(module, hook_name, fn)
    return module, PluginInfo(name=name, module=name, package=package, version="9.9")
