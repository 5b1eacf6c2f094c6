"""``streamproc dlq replay`` against the embedded broker: the filters (reason, source
partition, source offsets), PII-scrubbed letters never replayed, dry runs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from devtools.broker import EmbeddedBroker
from streamproc.decode.events import Reject
from streamproc.worker.deadletters import DeadLetterSink
from tests.conftest import read_topic

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.integration


def _cli(bootstrap: str, *args: str, cwd: Path) -> tuple[int, str]:
    p = subprocess.run(
        [sys.executable, "-m", "streamproc.cli", "dlq", "replay", "--broker",
         f"kafka://{bootstrap}", "--dlq-topic", "dlq", "--events-topic", "events",
         "--idle-s", "1", *args],
        cwd=cwd, capture_output=True, text=True, timeout=120,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    return p.returncode, p.stdout + p.stderr


class _Scrubbed:
    def dead_letter(self, value):
        return b'{"scrubbed": true}'


def test_replay_filters_and_skips_scrubbed_letters(tmp_path: Path) -> None:
    from confluent_kafka import Producer

    with EmbeddedBroker() as b:
        b.create_topics({"events": 1, "dlq": 1, "copy": 1})
        prod = Producer({"bootstrap.servers": b.bootstrap})
        sink = DeadLetterSink(prod, "dlq", "events")
        fixed = [Reject(0, 10 + i, "label: missing", f'{{"id": "m{i}"}}'.encode())
                 for i in range(5)]  # fmt: skip
        other = [Reject(1, 50 + i, "json: unexpected end", b"{") for i in range(3)]
        sink.send(fixed + other)
        DeadLetterSink(prod, "dlq", "events", scrub=_Scrubbed()).send(
            [Reject(0, 99, "label: missing", b'{"id": "secret"}')]
        )
        assert prod.flush(30) == 0

        rc, out = _cli(b.bootstrap, "--dry-run", cwd=tmp_path)
        assert rc == 0 and "read 9 dead letters" in out and "would replay 8" in out, out
        assert "1 skipped" in out
        rc, out = _cli(b.bootstrap, "--reason", "label", "--from-offset", "11",
                       "--to-offset", "13", "--to-topic", "copy", cwd=tmp_path)  # fmt: skip
        assert rc == 0 and "replayed 3 to copy" in out, out
        got = read_topic(b.bootstrap, "copy", expect=3, timeout=30)
        assert sorted(m.value() for m in got) == [b'{"id": "m1"}', b'{"id": "m2"}', b'{"id": "m3"}']
        rc, out = _cli(b.bootstrap, "--source-partition", "1", "--to-topic", "copy", cwd=tmp_path)
        assert rc == 0 and "replayed 3 to copy" in out, out
