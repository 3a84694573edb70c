"""Error types shared by every layer.

An :class:`OperationalError` is something an operator can fix (a missing key file, a bad
config value, a refused list); the CLI turns it into exit status 1 and one line on stderr.
"""

from __future__ import annotations


class OperationalError(Exception):
    """A failure an operator can act on; ``str(error)`` says what is wrong and what to do."""


class ConfigError(OperationalError):
    """The configuration file is missing a value, has an unknown key or an impossible value."""


class StoreError(OperationalError):
    """The encrypted store cannot be opened or written safely."""


class ListError(OperationalError):
    """A published infected-ID list is malformed, too large or not verified."""
