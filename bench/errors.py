"""Errors regbench raises for bad input. Each message names the file, key or value at fault."""


class RegbenchError(Exception):
    """Base class: the CLI prints these as one line, without a traceback."""


class RegistryError(RegbenchError, KeyError):
    """Unknown or doubly registered method/dataset name."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class ConfigError(RegbenchError, ValueError):
    """Bad configuration: unknown key, bad value, or a run directory holding another configuration."""


class MissingExtraError(ConfigError):
    """A method whose optional dependencies are not installed; the message names the pip command."""


class InputError(RegbenchError, ValueError):
    """Bad image, label or flow given to a method or metric (shapes, dtypes, non-finite values)."""


class DataError(RegbenchError, ValueError):
    """A dataset on disk is missing or malformed; the message names the file."""
