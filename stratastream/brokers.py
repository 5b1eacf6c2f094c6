"""What every command means by a broker address, and how it fails when there is none.

``embedded`` is the embedded broker that ``stratastream-dev broker`` (or ``make run``)
started here: its address is in ``.run/broker``. Anything else is ``kafka://host:port``
(several comma-separated). Every command (the worker, the producer, ``trainer follow``)
resolves an address with :func:`resolve_broker` and waits for it with
:func:`wait_for_broker`, which gives up after a bounded time with one clear error.

>>> resolve_broker("kafka://k1:9092,k2:9092")
'k1:9092,k2:9092'
>>> resolve_broker("k1:9092")
Traceback (most recent call last):
...
stratastream.errors.ConfigError: broker: expected 'embedded' or kafka://host:port, got 'k1:9092'
"""

from __future__ import annotations

import time
from pathlib import Path

from .errors import ConfigError, StratastreamError

RUN_DIR = Path(".run")  # where the local stack keeps its state (the embedded broker's address)


class BrokerError(StratastreamError):
    """The broker could not be started, reached or used."""


def resolve_broker(spec: str, run_dir: Path | None = None) -> str:
    """``host:port[,host:port]`` of a broker setting (see the module docstring)."""
    if spec == "embedded":
        f = (run_dir or RUN_DIR) / "broker"
        if f.exists():
            return f.read_text().strip()
        raise BrokerError(
            "broker: 'embedded' but no embedded broker is running here (no .run/broker); "
            "start one with `stratastream-dev broker` or `make run`, or pass "
            "--broker kafka://host:port (env STRATA_BROKER)"
        )
    if not isinstance(spec, str) or not spec.startswith("kafka://") or len(spec) <= 8:
        raise ConfigError(f"broker: expected 'embedded' or kafka://host:port, got {spec!r}")
    return spec.removeprefix("kafka://")


def wait_for_broker(bootstrap: str, timeout: float = 15.0, config: dict | None = None) -> None:
    """Block until the broker answers a metadata request, or raise :class:`BrokerError`
    naming the address, after ``timeout`` seconds. ``config``: extra librdkafka client
    settings (security)."""
    from confluent_kafka.admin import AdminClient

    # a probe: its connection failures are what this function reports, once, in its error
    # (librdkafka would otherwise log every retry to stderr)
    admin = AdminClient(
        {**(config or {}), "bootstrap.servers": bootstrap, "socket.timeout.ms": 2000,
         "log_level": 0}
    )  # fmt: skip
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            admin.list_topics(timeout=min(2.0, max(0.1, deadline - time.monotonic())))
            return
        except Exception as e:  # noqa: BLE001 - KafkaException while the port is not open
            last = e
            time.sleep(0.1)
    raise BrokerError(
        f"broker at {bootstrap} did not answer within {timeout:g}s ({last}); check the "
        "address, that the broker runs, and the security settings"
    )
