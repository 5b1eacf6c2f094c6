"""The sampler's errors: the project's exception root, re-exported for ``sampler`` users.

>>> from sampler.errors import StateError
>>> from stratastream.errors import StratastreamError
>>> issubclass(StateError, StratastreamError)
True
"""

from stratastream.errors import (
    ConfigError,
    InputError,
    LabelOverflowError,
    StateError,
    StratastreamError,
)

__all__ = ["ConfigError", "InputError", "LabelOverflowError", "StateError", "StratastreamError"]
