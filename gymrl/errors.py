"""Errors that gymrl raises for bad input: each names the bad value and what is allowed."""

from __future__ import annotations


class GymrlError(Exception):
    """Base class of every error gymrl raises on purpose."""


class UnknownNameError(GymrlError, KeyError):
    """A name (env, reward, tool, backend, policy) that nothing registered."""

    def __str__(self) -> str:  # KeyError quotes its message; keep it readable.
        return str(self.args[0]) if self.args else ""


class DuplicateNameError(GymrlError):
    """Two plugins registered the same name."""


class PluginError(GymrlError):
    """A plugin raised while loading or while being called."""


class ConfigError(GymrlError, ValueError):
    """A malformed or unknown configuration value."""


class BackendError(GymrlError):
    """An LLM backend failed: unreachable endpoint, missing model, bad response."""
