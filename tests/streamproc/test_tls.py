"""Kafka over TLS for real: the embedded broker behind a TLS-terminating proxy on loopback
(certificates made for the test by openssl), its advertised address the proxy's, so every
client connection is TLS. A worker, the producer and a snapshot go through it; a
plaintext client is refused in one line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from devtools.broker import EmbeddedBroker, free_port
from devtools.produce import produce_synthetic
from devtools.supervise import WorkerProcess, processed_all
from devtools.tlsproxy import TlsProxy, make_certificates
from snapshot_format import latest_version, read_manifest
from streamproc.settings import Settings
from streamproc.worker.topics import create_topics

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.integration


def test_worker_producer_and_snapshot_over_tls(tmp_path: Path) -> None:
    ca, cert, key = make_certificates(tmp_path / "tls")
    tls_port = free_port()
    with (
        EmbeddedBroker(advertise=f"127.0.0.1:{tls_port}") as broker,
        TlsProxy(("127.0.0.1", tls_port), ("127.0.0.1", broker.port), cert, key) as proxy,
    ):
        bootstrap = f"127.0.0.1:{tls_port}"
        s = Settings(kafka_security_protocol="SSL", kafka_ssl_ca=str(ca))
        tls = s.kafka_config()
        assert tls == {"security.protocol": "SSL", "ssl.ca.location": str(ca)}
        create_topics(bootstrap, {"events": 2}, config=tls)
        env = {
            "STRATA_KAFKA_SECURITY_PROTOCOL": "SSL",
            "STRATA_KAFKA_SSL_CA": str(ca),
            "STRATA_GROUP_ID": "tls",
            "STRATA_SNAPSHOT_EVERY_S": "3600",
        }
        w = WorkerProcess(bootstrap, tmp_path / "state", tmp_path / "snaps",
                          tmp_path / "w.log", env=env, partitions=2)  # fmt: skip
        try:
            w.wait_ready(90)
            rep = produce_synthetic(bootstrap, "events", n=2_000, n_labels=4, seed=3,
                                    progress=False, config=tls)  # fmt: skip
            w.wait_until(lambda st: processed_all(rep.next_offsets)([st]), 120, "events")
            before = latest_version(tmp_path / "snaps")
            w.request_snapshot()
            w.wait_until(lambda st: latest_version(tmp_path / "snaps") != before, 60,
                         "a snapshot")  # fmt: skip
            m = read_manifest(tmp_path / "snaps", latest_version(tmp_path / "snaps"))
            assert sum(m.seen.values()) == rep.events
            assert proxy.connections > 3  # bootstrap and broker connections, all TLS
        finally:
            assert w.stop() == 0
        # a client without TLS gets one clear line, fast
        p = subprocess.run(
            [sys.executable, "-m", "devtools", "produce", "--broker",
             f"kafka://{bootstrap}", "--events", "5", "--broker-timeout-s", "3"],
            cwd=tmp_path, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        err = p.stderr.strip().splitlines()
        assert p.returncode == 2 and err[-1].startswith("error: broker at"), p.stderr


def test_security_settings_validate_and_never_show_secrets(tmp_path: Path) -> None:
    from stratastream.errors import ConfigError

    s = Settings(kafka_security_protocol="SASL_SSL", kafka_sasl_mechanism="SCRAM-SHA-512",
                 kafka_sasl_username="svc", kafka_sasl_password="s3cret-pass-word",
                 kafka_consumer_options="fetch.min.bytes=1024")  # fmt: skip
    assert s.kafka_config("consumer") == {
        "security.protocol": "SASL_SSL", "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.username": "svc", "sasl.password": "s3cret-pass-word", "fetch.min.bytes": "1024",
    }  # fmt: skip
    assert "fetch.min.bytes" not in s.kafka_config("producer")
    assert "s3cret" not in repr(s)
    bad = [
        ({"kafka_security_protocol": "TLS"}, "kafka_security_protocol"),
        ({"kafka_security_protocol": "SASL_SSL"}, "kafka_sasl_mechanism"),
        ({"kafka_security_protocol": "SASL_PLAINTEXT", "kafka_sasl_mechanism": "PLAIN"},
         "kafka_sasl_username"),
        ({"kafka_security_protocol": "SSL", "kafka_ssl_ca": str(tmp_path / "nope.pem")},
         "kafka_ssl_ca"),
        ({"kafka_options": "linger.ms"}, "kafka_options"),
        ({"kafka_producer_options": "bootstrap.servers=x:1"}, "kafka_producer_options"),
    ]  # fmt: skip
    for kw, needle in bad:
        with pytest.raises(ConfigError, match=needle):
            Settings(**kw)
