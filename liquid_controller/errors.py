"""Typed errors shared by every layer.

Anything that validates data arriving from outside (sensor messages, bags, model files, scene files,
parameters) raises one of these. The node turns an ``InputError`` into a safe stop plus a diagnostic;
a command-line tool turns it into a one-line message and a non-zero exit code.
"""


class LiquidControllerError(Exception):
    """Base class of the package's own errors."""


class InputError(LiquidControllerError, ValueError):
    """Bad input data: names the argument (or message field) and the offending value.

    Subclasses ValueError so callers (and tests) may catch either.
    """

    def __init__(self, name, value, reason):
        self.name = name
        self.value = value
        self.reason = reason
        shown = repr(value)
        if len(shown) > 80:
            shown = shown[:77] + '...'
        super().__init__(f'{name}={shown}: {reason}')


class ModelFileError(LiquidControllerError):
    """A model file is missing, corrupt, or does not match its card or the configuration."""


class SceneError(LiquidControllerError, ValueError):
    """A scene file is invalid: names the file and the key."""


class BagError(LiquidControllerError):
    """A rosbag2 bag cannot be read or written: names the file and, when known, the topic."""
