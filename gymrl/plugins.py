"""The plugin manager: entry points of group ``gymrl``, one path for first and third parties.

Only this module touches ``pm.hook``; everything else calls the typed accessors below
(:func:`get`, :func:`registered`, :func:`notify_episode_end`, ...).
"""

from __future__ import annotations

import importlib.metadata as md
import inspect
import os
import re
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import pluggy

from gymrl import hookspecs
from gymrl.errors import DuplicateNameError, PluginError, UnknownNameError

ENTRY_POINT_GROUP = "gymrl"
NAME_RE = re.compile(r"^[a-z][a-z0-9_]*$")
KINDS = ("env", "reward", "tool", "backend")
_HOOK_OF_KIND = {
    "env": "register_envs",
    "reward": "register_rewards",
    "tool": "register_tools",
    "backend": "register_backends",
}


@dataclass(frozen=True)
class PluginInfo:
    """Where a plugin came from: its entry-point name, module and distribution."""

    name: str
    module: str
    package: str
    version: str
    path: str = ""


@dataclass(frozen=True)
class Registration:
    """One registered thing, stamped with the plugin that registered it."""

    kind: str
    name: str
    factory: Callable[..., Any]
    plugin: PluginInfo
    description: str = ""
    meta: dict[str, Any] = field(default_factory=dict)

    def where(self) -> str:
        p = self.plugin
        return f"plugin '{p.name}' from package {p.package} {p.version}"


class Registry:
    """Loads plugins and holds what they registered."""

    def __init__(self) -> None:
        self.pm = pluggy.PluginManager("gymrl")
        self.pm.add_hookspecs(hookspecs)
        self.plugins: dict[str, PluginInfo] = {}
        self.items: dict[str, dict[str, Registration]] = {kind: {} for kind in KINDS}
        self.trace = os.environ.get("GYMRL_TRACE_PLUGINS", "") not in ("", "0")

    # -- loading -------------------------------------------------------------------------
    def load_entry_points(self, pins: Iterable[str] | None = None) -> None:
        """Load every entry point of group ``gymrl`` (or only the pinned ones)."""
        pinned = {p.strip() for p in pins} if pins is not None else None
        for ep in sorted(md.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
            dist = ep.dist
            package = dist.metadata["Name"] if dist is not None else "?"
            version = dist.version if dist is not None else "?"
            if pinned is not None and ep.name not in pinned and package not in pinned:
                continue
            try:
                module = ep.load()
            except Exception as exc:
                raise PluginError(
                    f"plugin '{ep.name}' from package {package} {version} failed to load "
                    f"({ep.value}): {type(exc).__name__}: {exc}"
                ) from exc
            info = PluginInfo(
                name=ep.name,
                module=ep.value,
                package=package,
                version=version,
                path=getattr(module, "__file__", "") or "",
            )
            self.add_plugin(module, info)
        if pinned is not None:
            missing = pinned - {p.name for p in self.plugins.values()} - {
                p.package for p in self.plugins.values()
            }
            if missing:
                found = sorted(f"{ep.name} ({ep.dist.metadata['Name'] if ep.dist else '?'})"
                               for ep in md.entry_points(group=ENTRY_POINT_GROUP))
                raise UnknownNameError(
                    f"GYMRL_LOAD_PLUGINS names {sorted(missing)}, which no installed plugin "
                    f"provides; installed: {', '.join(found) or 'none'}"
                )

    def add_plugin(self, module: object, info: PluginInfo) -> None:
        """Register one plugin object and collect what its hooks register."""
        if info.name in self.plugins:
            other = self.plugins[info.name]
            raise DuplicateNameError(
                f"two plugins are named '{info.name}': from package {other.package} and "
                f"from package {info.package}"
            )
        self.pm.register(module, name=info.name)
        try:
            self.pm.check_pending()
        except pluggy.PluginValidationError as exc:
            self.pm.unregister(module)
            raise PluginError(
                f"plugin '{info.name}' from package {info.package} implements an unknown "
                f"hook: {exc}"
            ) from exc
        self.plugins[info.name] = info
        for kind, hook_name in _HOOK_OF_KIND.items():
            for impl in getattr(self.pm.hook, hook_name).get_hookimpls():
                if impl.plugin is module:
                    self._call_register_hook(kind, impl, info)

    def _call_register_hook(self, kind: str, impl: Any, info: PluginInfo) -> None:
        def register(name: str, factory: Callable[..., Any], *, description: str = "",
                     **meta: Any) -> None:
            self._add(kind, name, factory, info, description, meta)

        if self.trace:
            print(f"gymrl: {info.name}.{impl.function.__name__}()", file=sys.stderr)
        try:
            impl.function(**{arg: register for arg in impl.argnames})
        except (DuplicateNameError, UnknownNameError):
            raise
        except Exception as exc:
            raise PluginError(
                f"plugin '{info.name}' from package {info.package} {info.version} raised in "
                f"{impl.function.__name__}: {type(exc).__name__}: {exc}"
            ) from exc

    def _add(self, kind: str, name: str, factory: Callable[..., Any], info: PluginInfo,
             description: str, meta: dict[str, Any]) -> None:
        if not isinstance(name, str) or not NAME_RE.match(name):
            raise PluginError(
                f"plugin '{info.name}' from package {info.package} registered the {kind} "
                f"name {name!r}: names must match {NAME_RE.pattern}"
            )
        if name in self.items[kind]:
            first = self.items[kind][name]
            raise DuplicateNameError(
                f"{kind} '{name}' is registered twice: by {first.where()} and by plugin "
                f"'{info.name}' from package {info.package} {info.version}"
            )
        if not description:
            description = (inspect.getdoc(factory) or "").split("\n")[0]
        self.items[kind][name] = Registration(kind, name, factory, info, description, meta)

    # -- accessors -----------------------------------------------------------------------
    def get(self, kind: str, name: str) -> Registration:
        try:
            return self.items[kind][name]
        except KeyError:
            known = self.items[kind]
            listing = ", ".join(f"{n} ({r.plugin.package})" for n, r in sorted(known.items()))
            raise UnknownNameError(
                f"unknown {kind} {name!r}; registered {kind}s: {listing or 'none'}"
            ) from None

    def call_observers(self, hook_name: str, **kwargs: Any) -> None:
        """Call an observer hook on every plugin, naming the plugin if one raises."""
        for impl in getattr(self.pm.hook, hook_name).get_hookimpls():
            info = self.plugins.get(self.pm.get_name(impl.plugin) or "")
            try:
                impl.function(**{a: kwargs[a] for a in impl.argnames if a in kwargs})
            except Exception as exc:
                who = (f"plugin '{info.name}' from package {info.package}" if info
                       else f"plugin {impl.plugin_name}")
                raise PluginError(
                    f"{who} raised in {hook_name}: {type(exc).__name__}: {exc}"
                ) from exc


_registry: Registry | None = None


def registry() -> Registry:
    """The process-wide registry, loaded from entry points on first use."""
    global _registry
    if _registry is None:
        reg = Registry()
        pins = os.environ.get("GYMRL_LOAD_PLUGINS")
        reg.load_entry_points(pins.split(",") if pins is not None and pins.strip() else None)
        _registry = reg
        _register_with_gymnasium(reg)
    return _registry


def reset(registry_: Registry | None = None) -> None:
    """Drop the loaded registry (tests), or install a prepared one."""
    global _registry
    _registry = registry_
    if registry_ is not None:
        _register_with_gymnasium(registry_)


def get(kind: str, name: str) -> Registration:
    """The registration of ``name`` of ``kind``; unknown names list the registered ones."""
    return registry().get(kind, name)


def registered(kind: str) -> dict[str, Registration]:
    """Everything registered of one kind, by name."""
    return dict(registry().items[kind])


def notify_episode_end(episode: Any, scores: dict[str, float]) -> None:
    registry().call_observers("episode_end", episode=episode, scores=scores)


def notify_metrics(metrics: dict[str, Any], step: int) -> None:
    registry().call_observers("log_metrics", metrics=metrics, step=step)


def _register_with_gymnasium(reg: Registry) -> None:
    """Register each env as ``gymrl/<name>-v0`` so ``gymnasium.make`` finds it."""
    import gymnasium

    from gymrl.make import make_env

    for name in reg.items["env"]:
        env_id = f"gymrl/{name}-v0"
        if env_id in gymnasium.registry:
            continue

        def creator(_name: str = name, **kwargs: Any) -> Any:
            return make_env(_name, **kwargs)

        gymnasium.register(id=env_id, entry_point=creator, disable_env_checker=False)
