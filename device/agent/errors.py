"""The reference agent's errors: one base class, a few specific ones."""

from __future__ import annotations


class AgentError(Exception):
    """Base of every error the reference agent raises on purpose."""


class ConfigError(AgentError):
    """A config file, key, value or fault name is wrong; the message names it."""


class EngineError(AgentError):
    """An engine cannot be loaded or failed (missing package, missing model file)."""
