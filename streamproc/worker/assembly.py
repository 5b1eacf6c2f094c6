"""Assembly: each component gets only its settings section, turned into its own types.

The settings know nothing of the components (:mod:`streamproc.settings` imports nothing
of ``streamproc``); this module is the one place that maps sections onto them.

>>> from streamproc.settings import Settings
>>> s = Settings.load(env={}, feature_dim=3, max_capacity=500)
>>> limits(s.decode).feature_dim, sampler_config(s.sampler).policy.max_capacity
(3, 500)
"""

from __future__ import annotations

from drift.monitor import DriftConfig
from streamproc.decode.events import Limits
from streamproc.decode.pii import PiiScrubber
from streamproc.decode.wire import WireSchemas
from streamproc.settings import DecodeSection, DriftSection, SamplerSection, SnapshotSection
from streamproc.snapshot.quality import QualityConfig
from streamproc.state.processor import SamplerConfig


def limits(d: DecodeSection) -> Limits:
    return Limits(
        d.feature_dim, d.max_event_bytes, d.max_future_s, d.max_labels_per_event,
        max_message_bytes=d.max_message_bytes, feature_names=d.feature_names,
        wire=wire_schemas(d),
    )  # fmt: skip


def wire_schemas(d: DecodeSection) -> WireSchemas | None:
    """Readers of Avro/Protobuf wire-format events, when a schema source is configured."""
    if not (d.schema_registry_url or d.schema_dir):
        return None
    conf = {}
    if d.schema_registry_auth:
        conf["basic.auth.user.info"] = d.schema_registry_auth
    if d.schema_registry_ca:
        conf["ssl.ca.location"] = d.schema_registry_ca
    return WireSchemas(d.schema_registry_url, d.schema_dir or None, conf, d.feature_names)


def quality_config(s: SnapshotSection) -> QualityConfig:
    return QualityConfig(s.dq_duplicate_tolerance, s.dq_source_field, s.dq_outlier_z,
                         s.dq_min_rows, s.dq_exclude)  # fmt: skip


def scrubber(d: DecodeSection) -> PiiScrubber | None:
    if not (d.pii_hash_fields or d.pii_text_fields or d.pii_hash_ids):
        return None
    return PiiScrubber(
        d.pii_key.encode(), d.pii_hash_fields, d.pii_text_fields, d.pii_hash_ids,
        d.pii_max_text_chars,
    )  # fmt: skip


def sampler_config(s: SamplerSection) -> SamplerConfig:
    return SamplerConfig(
        s.policy, s.mode, s.half_life, s.seed, s.multilabel, s.eval_fraction, s.substrata
    )


def drift_config(d: DriftSection) -> DriftConfig:
    return DriftConfig(
        alpha=d.alpha, correction=d.correction, min_samples=d.min_samples,
        window_half_life_s=d.window_half_life_s, window_capacity=d.window_capacity,
        max_labels=d.max_labels, scarce_ratio=d.scarce_ratio, actions=d.actions, seed=d.seed,
    )  # fmt: skip


def faust_credentials(s):  # noqa: ANN001 - Settings (the shell's)
    """The Faust app's own broker credentials (aiokafka), from the same Kafka security
    settings as the librdkafka clients; None for PLAINTEXT."""
    import ssl

    import faust

    proto = s.kafka_security_protocol
    if proto == "PLAINTEXT":
        return None
    ctx = None
    if "SSL" in proto:
        ctx = ssl.create_default_context(cafile=s.kafka_ssl_ca or None)
        if s.kafka_ssl_cert:
            ctx.load_cert_chain(s.kafka_ssl_cert, s.kafka_ssl_key,
                                s.kafka_ssl_key_password or None)  # fmt: skip
    if proto == "SSL":
        return faust.SSLCredentials(ctx)
    if s.kafka_sasl_mechanism == "OAUTHBEARER":
        from stratastream.errors import ConfigError

        raise ConfigError(
            "kafka_sasl_mechanism: OAUTHBEARER works for the ingest clients (librdkafka) "
            "but not for the Faust app's own clients; use PLAIN or SCRAM for the worker"
        )
    return faust.SASLCredentials(
        username=s.kafka_sasl_username, password=s.kafka_sasl_password,
        mechanism=s.kafka_sasl_mechanism, ssl_context=ctx,
    )  # fmt: skip
