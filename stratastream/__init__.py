"""The project's base layer: the one exception root that every package shares.

It imports nothing of ours and nothing outside the standard library, so every package
(``sampler``, ``drift``, ``snapshot_format``, ``streamproc``, ``trainer``, ``devtools``)
may import it without creating an upward arrow.

>>> from stratastream.errors import ConfigError, StratastreamError
>>> issubclass(ConfigError, StratastreamError)
True
"""
