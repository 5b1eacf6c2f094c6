"""Typed settings, read from a TOML file, ``STRATA_*`` environment variables and flags.

Precedence: defaults < file (``--config`` or ``STRATA_CONFIG``) < environment < CLI flags
(one ``--flag`` per setting, generated from the fields: :func:`add_flags`). Every bad
value raises :class:`ConfigError` naming the setting and the reason.

The settings are flat where a user writes them (one name per setting, the same in the
file, the environment and the flags) and sectioned where the code reads them: each
component receives only its section (:attr:`Settings.checkpoint`, :attr:`Settings.decode`,
...), a frozen dataclass. This module imports nothing of ``streamproc``; it validates the
sampler and drift values with the ``sampler`` and ``drift`` types those values configure.

>>> s = Settings.load(env={"STRATA_CHECKPOINT_EVERY_S": "2.5"}, partitions=8)
>>> s.checkpoint.every_s, s.snapshot.partitions
(2.5, 8)
>>> Settings.load(env={"STRATA_PARTITIONS": "four"})
Traceback (most recent call last):
...
stratastream.errors.ConfigError: partitions: expected int, got 'four'
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import math
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sampler import EVAL_LABEL, Grid, QuotaPolicy
from stratastream.errors import ConfigError


@dataclass(frozen=True)
class CheckpointSection:
    """The checkpoint cadence (whichever comes first) and the state store."""

    state_dir: Path
    state_sync: bool
    every_events: int
    every_s: float
    max_pending_bytes: float


@dataclass(frozen=True)
class DecodeSection:
    """Validation limits of one event, and the PII policy."""

    feature_dim: int
    max_event_bytes: int
    max_future_s: float
    max_message_bytes: int
    max_labels_per_event: int
    pii_key: str = field(repr=False)
    pii_hash_fields: tuple[str, ...]
    pii_text_fields: tuple[str, ...]
    pii_hash_ids: bool
    pii_max_text_chars: int
    feature_names: tuple[str, ...] = ()
    schema_registry_url: str = ""
    schema_dir: str = ""
    schema_registry_auth: str = field(default="", repr=False)
    schema_registry_ca: str = ""


@dataclass(frozen=True)
class SamplerSection:
    """The per-label reservoirs' policy and mode."""

    policy: QuotaPolicy
    mode: str
    half_life: float | None
    seed: int
    multilabel: str
    eval_fraction: float = 0.0
    substrata: Grid | None = None


@dataclass(frozen=True)
class SnapshotSection:
    """Snapshot cadence, local store and remote publishing."""

    store: Path
    every_s: float
    retention: int
    url: str
    partitions: int
    feature_names: tuple[str, ...] = ()
    # data quality (assembly.quality_config turns these into the snapshot's QualityConfig)
    dq_duplicate_tolerance: float = 1e-4
    dq_source_field: str = ""
    dq_outlier_z: float = 8.0
    dq_min_rows: int = 30
    dq_exclude: bool = False


@dataclass(frozen=True)
class DriftSection:
    """The drift watch: cadence, tests and the actions it may take."""

    enabled: bool
    topic: str
    every_s: float
    alpha: float
    correction: str
    min_samples: int
    window_half_life_s: float
    window_capacity: int
    max_labels: int
    scarce_ratio: float
    action_cooldown_s: float
    actions: tuple[str, ...]
    seed: int


SECRET_FIELDS = frozenset({
    "kafka_sasl_password", "kafka_ssl_key_password", "pii_key", "hitl_token", "hitl_tokens",
    "admin_token", "schema_registry_auth",
})  # fmt: skip
_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER")


_FEATURE_NAME = __import__("re").compile(r"[A-Za-z_][A-Za-z0-9_.\-]{0,63}")


def _validate_schemas(s) -> None:  # noqa: ANN001 - Settings
    url = s.schema_registry_url
    if url and not url.startswith(("http://", "https://")):
        raise ConfigError(f"schema_registry_url: {url!r} is not an http:// or https:// URL")
    if s.schema_dir and not Path(s.schema_dir).is_dir():
        raise ConfigError(f"schema_dir: {s.schema_dir!r} is not a directory")
    if s.schema_registry_auth and ":" not in s.schema_registry_auth:
        raise ConfigError("schema_registry_auth: expected user:password (not shown)")
    if s.schema_registry_ca and not Path(s.schema_registry_ca).is_file():
        raise ConfigError(f"schema_registry_ca: {s.schema_registry_ca!r} is not a file")


def _validate_feature_names(names: list[str], dim: int) -> None:
    if not names:
        return
    if len(names) != dim:
        raise ConfigError(f"feature_names: {len(names)} names for feature_dim={dim}")
    for n in names:
        if not isinstance(n, str) or not _FEATURE_NAME.fullmatch(n):
            raise ConfigError(
                f"feature_names: {n!r} is not a name (a letter or _, then letters, digits, "
                "_ . -; at most 64 characters)"
            )
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ConfigError(f"feature_names: {dup} appear more than once")


def parse_options(text: str, name: str) -> dict[str, str]:
    """``"a.b=1;c=x"`` -> ``{"a.b": "1", "c": "x"}``; an entry without ``=`` is an error.

    >>> parse_options("linger.ms=5; acks=all", "kafka_producer_options")
    {'linger.ms': '5', 'acks': 'all'}
    """
    out = {}
    for item in (x.strip() for x in (text or "").split(";")):
        if not item:
            continue
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"{name}: expected key=value entries separated by ';', got {item!r}")
        out[key.strip()] = value.strip()
    return out


def _validate_kafka(s: Settings) -> None:
    proto = s.kafka_security_protocol
    if proto not in _PROTOCOLS:
        raise ConfigError(f"kafka_security_protocol: expected one of {_PROTOCOLS}, got {proto!r}")
    if proto.startswith("SASL"):
        if s.kafka_sasl_mechanism not in _MECHANISMS:
            raise ConfigError(
                f"kafka_sasl_mechanism: {proto} needs one of {_MECHANISMS}, got "
                f"{s.kafka_sasl_mechanism!r}"
            )
        if s.kafka_sasl_mechanism != "OAUTHBEARER" and not (
            s.kafka_sasl_username and s.kafka_sasl_password
        ):
            raise ConfigError(
                "kafka_sasl_username / kafka_sasl_password: required for "
                f"{s.kafka_sasl_mechanism} (set the password through STRATA_KAFKA_SASL_PASSWORD)"
            )
    elif s.kafka_sasl_mechanism:
        raise ConfigError(
            f"kafka_sasl_mechanism: set, but kafka_security_protocol is {proto} (no SASL)"
        )
    for name in ("kafka_ssl_ca", "kafka_ssl_cert", "kafka_ssl_key"):
        path = getattr(s, name)
        if path and not Path(path).is_file():
            raise ConfigError(f"{name}: {path} is not a readable file")
    if (s.kafka_ssl_ca or s.kafka_ssl_cert) and "SSL" not in proto:
        raise ConfigError(f"kafka_ssl_*: set, but kafka_security_protocol is {proto} (no TLS)")
    if bool(s.kafka_ssl_cert) != bool(s.kafka_ssl_key):
        raise ConfigError("kafka_ssl_cert / kafka_ssl_key: give both (mutual TLS) or neither")
    for name in ("kafka_options", "kafka_consumer_options", "kafka_producer_options"):
        opts = parse_options(getattr(s, name), name)
        if "bootstrap.servers" in opts:
            raise ConfigError(f"{name}: set the broker with 'broker', not bootstrap.servers")


def _validate_drift(d: DriftSection) -> None:
    from drift.monitor import DriftConfig

    DriftConfig(
        alpha=d.alpha, correction=d.correction, min_samples=d.min_samples,
        window_half_life_s=d.window_half_life_s, window_capacity=d.window_capacity,
        max_labels=d.max_labels, scarce_ratio=d.scarce_ratio, actions=d.actions, seed=d.seed,
    )  # fmt: skip


@dataclass
class Settings:
    broker: str = "embedded"  # "embedded" or kafka://host:port[,host:port]
    events_topic: str = "events"
    dlq_topic: str = "events-dlq"
    snapshots_topic: str = "snapshots"
    partitions: int = 4
    group_id: str = "stratastream"
    state_dir: Path = Path("state")
    snapshot_dir: Path = Path("snapshots")
    checkpoint_every_events: int = 2_000_000
    checkpoint_every_s: float = 5.0
    # memory a partition's pending admissions may keep alive before a checkpoint
    checkpoint_max_pending_mb: float = 64.0
    # fsync RocksDB's write-ahead log at every checkpoint; off, a killed process loses
    # nothing and an OS crash can only send a partition back to an earlier checkpoint
    state_sync: bool = False
    snapshot_every_s: float = 10.0
    snapshot_retention: int = 10
    snapshot_url: str = ""  # publish to this fsspec URL too; shards live there
    feature_dim: int = 4
    # names of the features, in order (default f0..f<dim-1>): carried into the snapshot
    # manifest, drift messages and metrics, the trainer and the registry
    feature_names: list[str] = field(default_factory=list)
    max_event_bytes: int = 65_536
    # labels one event may carry; an event with more is a dead letter
    max_labels_per_event: int = 8
    # any message (frames included); larger ones are dead letters. The worker's consumer
    # accepts records up to twice this size (librdkafka receive.message.max.bytes)
    max_message_bytes: int = 64 << 20
    max_future_s: float = 3_600.0
    sampler_mode: str = "uniform"
    sampler_half_life_s: float = 0.0  # decayed mode only
    sampler_seed: int = 0
    multilabel: str = "primary"
    min_capacity: int = 200
    max_capacity: int = 2_000
    boost_capacity: int = 5_000
    global_cap: int = 100_000
    max_labels: int = 256
    on_label_overflow: str = "label"
    # sub-strata inside a label (off when empty): a grid over these features (names or
    # indexes) cut at substrata_edges; a label's capacity is shared over its cells, and
    # max_labels then counts (label, cell) strata
    substrata_features: list[str] = field(default_factory=list)
    substrata_edges: list[str] = field(default_factory=list)
    # share of events (by a hash of the event key) kept out of training in a uniform,
    # natural-mix evaluation reservoir published beside each snapshot; 0 turns it off
    # data quality of each snapshot's training rows (streamproc/snapshot/quality.py):
    # near-duplicates (same label, same dq_source_field value, features in the same
    # grid cell of width dq_duplicate_tolerance; 0: off), outliers (robust z-score above
    # dq_outlier_z against the label's rows; 0: off; labels with >= dq_min_rows rows);
    # flagged rows are published with flags, or left out with dq_exclude
    dq_duplicate_tolerance: float = 1e-4
    dq_source_field: str = ""
    dq_outlier_z: float = 8.0
    dq_min_rows: int = 30
    dq_exclude: bool = False
    eval_fraction: float = 0.02
    eval_capacity: int = 5_000
    web_bind: str = "127.0.0.1"  # 0.0.0.0 in containers
    stall_timeout_s: float = 60.0  # /health turns 503 after this long without progress
    # when a partition's log is not the one its checkpoint was taken on (truncated,
    # recreated, restored, or its start moved past the checkpoint): "fail" pauses the
    # partition and reports unhealthy; "reset" quarantines its state and rebuilds it from
    # the log start; "continue" keeps the state and consumes from the log start
    on_log_rewind: str = "fail"
    # how long a command waits for the broker to answer before it fails with one line
    broker_timeout_s: float = 15.0
    # Kafka security, for every client (consumer, producers, admin, the Faust app's own)
    kafka_security_protocol: str = "PLAINTEXT"  # PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL
    kafka_sasl_mechanism: str = ""  # PLAIN, SCRAM-SHA-256, SCRAM-SHA-512, OAUTHBEARER
    kafka_sasl_username: str = ""
    kafka_sasl_password: str = field(default="", repr=False)  # secret: STRATA_KAFKA_SASL_PASSWORD
    kafka_ssl_ca: str = ""  # PEM file of the CA that signed the brokers' certificates
    kafka_ssl_cert: str = ""  # client certificate (mutual TLS), PEM
    kafka_ssl_key: str = ""  # its private key, PEM
    kafka_ssl_key_password: str = field(default="", repr=False)  # a secret
    # Avro / Protobuf events in Confluent's wire format: schemas from a Schema Registry
    # (URL, optional "user:password" basic auth and CA file) or from files in schema_dir
    # (<id>.avsc, <id>.binpb); JSON events, frames and Arrow record batches need neither
    schema_registry_url: str = ""
    schema_registry_auth: str = field(default="", repr=False)  # secret: "user:password"
    schema_registry_ca: str = ""
    schema_dir: str = ""
    # librdkafka settings passed through as they are, "key=value;key=value": to every
    # client, to consumers only, to producers only (e.g. "sasl.oauthbearer.method=oidc")
    kafka_options: str = ""
    kafka_consumer_options: str = ""
    kafka_producer_options: str = ""
    # a partition resumes one message before its checkpoint; when that message has not
    # arrived after this long (and the broker answers), the log no longer holds it
    log_check_s: float = 15.0
    metrics_max_labels: int = 100  # per-label series; the rest are summed as __other__
    drift_enabled: bool = True
    drift_topic: str = "drift"
    drift_every_s: float = 10.0
    drift_alpha: float = 0.01
    drift_correction: str = "bh"
    drift_min_samples: int = 50
    drift_window_half_life_s: float = 600.0
    drift_window_capacity: int = 1_000
    drift_scarce_ratio: float = 0.5
    drift_action_cooldown_s: float = 300.0  # repeat non-alert actions at most this often
    # boost_quota changes sampler state at a wall-clock moment; opt in (see README)
    drift_actions: list[str] = field(
        default_factory=lambda: ["alert", "request_snapshot", "retrain"]
    )
    hitl_token: str = field(default="", repr=False)  # empty: endpoints answer 503
    # more credentials, one per annotator: "alice=<token>,bob=<token>"; an annotation is
    # accepted only under the annotator id its token names
    hitl_tokens: list[str] = field(default_factory=list, repr=False)
    hitl_body_timeout_s: float = 10.0  # a request body must arrive within this
    # bearer token of POST /snapshot (empty: the endpoint answers 503)
    admin_token: str = field(default="", repr=False)
    snapshot_min_interval_s: float = 1.0  # requested snapshots are at least this far apart
    # snapshots are built beside ingestion (one at a time); the timer stretches so that
    # one snapshot's time is at most this share of the time between two
    snapshot_max_share: float = 0.25
    hitl_registry_dir: Path = Path("registry")
    hitl_max_body_bytes: int = 65_536
    hitl_rate_per_s: float = 50.0
    hitl_burst: float = 100.0
    hitl_agreement_bar: float = 0.6  # 0.8 for high-stakes labels
    hitl_prediction_ttl_s: float = 86_400.0
    hitl_partitions: int = 4
    predictions_topic: str = "predictions"
    feedback_topic: str = "feedback"
    annotations_topic: str = "annotations"
    relabel_topic: str = "relabel"
    spot_check_topic: str = "spot-check"
    hitl_spot_check_fraction: float = 0.05  # per label, of each snapshot's rows
    # safe rollout: what feedback says about each model (one partition: one decider),
    # and every rollout decision
    # active learning: predictions selected for labelling go to annotate_topic (and
    # GET /annotate/next), at most annotation_budget_per_hour per predicted label and
    # worker (0: off), the uncertain ones more likely (streamproc/hitl/active.py)
    annotate_topic: str = "annotate"
    annotation_budget_per_hour: float = 60.0
    outcomes_topic: str = "hitl-outcomes"
    deployments_topic: str = "deployments"
    # items held out of snapshots for low annotator agreement, read by every worker (one
    # partition: one order of decisions)
    holds_topic: str = "hitl-holds"
    # a candidate (shadow or canary) is rolled back when the champion's online accuracy
    # is higher by more than rollout_margin with rollout_confidence, promoted when lower
    # by as much, after rollout_min_judged judged predictions each
    rollout_margin: float = 0.02
    rollout_confidence: float = 0.95
    rollout_min_judged: int = 200
    pii_key: str = field(default="", repr=False)
    pii_hash_fields: list[str] = field(default_factory=list)
    pii_text_fields: list[str] = field(default_factory=list)
    pii_hash_ids: bool = False  # store HMAC pseudonyms of event ids instead of the ids
    pii_max_text_chars: int = 65_536  # longer PII text fields are refused, not scanned

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            setattr(self, f.name, _coerce(f.name, f.type, getattr(self, f.name)))
        positive = (
            "partitions",
            "checkpoint_every_events",
            "checkpoint_every_s",
            "checkpoint_max_pending_mb",
            "snapshot_every_s",
            "snapshot_retention",
            "feature_dim",
            "max_event_bytes",
            "max_message_bytes",
            "max_future_s",
            "stall_timeout_s",
            "broker_timeout_s",
            "drift_every_s",
            "drift_window_half_life_s",
            "metrics_max_labels",
            "pii_max_text_chars",
        )
        for f in dataclasses.fields(self):  # NaN and infinities are never a setting
            v = getattr(self, f.name)
            if isinstance(v, float) and not math.isfinite(v):
                raise ConfigError(f"{f.name}: must be a finite number, got {v!r}")
        for name in positive:
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name}: must be > 0, got {getattr(self, name)!r}")
        non_negative = (
            "sampler_half_life_s", "drift_action_cooldown_s", "hitl_spot_check_fraction",
            "sampler_seed",
        )  # fmt: skip
        for name in non_negative:
            if getattr(self, name) < 0:
                raise ConfigError(f"{name}: must be >= 0, got {getattr(self, name)!r}")
        for name in ("hitl_agreement_bar", "hitl_spot_check_fraction", "drift_scarce_ratio"):
            if not 0 <= getattr(self, name) <= 1:
                raise ConfigError(f"{name}: must be in [0, 1], got {getattr(self, name)!r}")
        for name in ("hitl_rate_per_s", "hitl_burst", "hitl_max_body_bytes",
                     "hitl_prediction_ttl_s", "hitl_partitions", "snapshot_min_interval_s",
                     "hitl_body_timeout_s"):  # fmt: skip
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name}: must be > 0, got {getattr(self, name)!r}")
        if self.max_event_bytes > self.max_message_bytes:
            raise ConfigError(
                f"max_event_bytes: {self.max_event_bytes} exceeds max_message_bytes="
                f"{self.max_message_bytes}"
            )
        if not 1 <= self.max_labels_per_event <= 1024:
            raise ConfigError(
                f"max_labels_per_event: must be in [1, 1024], got {self.max_labels_per_event}"
            )
        if not 1 <= self.feature_dim <= 4096:
            raise ConfigError(f"feature_dim: must be in [1, 4096], got {self.feature_dim}")
        _validate_feature_names(self.feature_names, self.feature_dim)
        for pair in self.hitl_tokens:
            name, sep, token = pair.partition("=")
            if not sep or not name.strip() or len(token) < 16:
                raise ConfigError(
                    "hitl_tokens: expected annotator=token pairs with tokens of 16+ "
                    "characters (the token itself is not shown)"
                )
        for name in ("hitl_token", "admin_token"):
            if 0 < len(getattr(self, name)) < 16:
                raise ConfigError(f"{name}: must be empty (off) or 16+ characters")
        _validate_kafka(self)
        _validate_schemas(self)
        if not 0 < self.snapshot_max_share <= 1:
            raise ConfigError(
                f"snapshot_max_share: must be in (0, 1], got {self.snapshot_max_share!r}"
            )
        for name in ("dq_duplicate_tolerance", "dq_outlier_z"):
            v = getattr(self, name)
            if not (0 <= v < math.inf):
                raise ConfigError(f"{name}: must be >= 0 (0: off), got {v!r}")
        if self.dq_min_rows < 3:
            raise ConfigError(f"dq_min_rows: must be >= 3, got {self.dq_min_rows!r}")
        self.substrata_grid  # noqa: B018 - validates the sub-strata settings
        if not 0 <= self.annotation_budget_per_hour < math.inf:
            raise ConfigError(
                "annotation_budget_per_hour: must be >= 0 (0: off), got "
                f"{self.annotation_budget_per_hour!r}"
            )
        if not 0 <= self.rollout_margin < 1:
            raise ConfigError(f"rollout_margin: must be in [0, 1), got {self.rollout_margin!r}")
        if not 0.5 <= self.rollout_confidence < 1:
            raise ConfigError(
                f"rollout_confidence: must be in [0.5, 1), got {self.rollout_confidence!r}"
            )
        if self.rollout_min_judged < 1:
            raise ConfigError(f"rollout_min_judged: must be >= 1, got {self.rollout_min_judged!r}")
        if not 0 < self.log_check_s <= 3_600:
            raise ConfigError(f"log_check_s: must be in (0, 3600], got {self.log_check_s!r}")
        if self.on_log_rewind not in ("fail", "reset", "continue"):
            raise ConfigError(
                f"on_log_rewind: must be 'fail', 'reset' or 'continue', got {self.on_log_rewind!r}"
            )
        if self.multilabel not in ("primary", "split"):
            raise ConfigError(f"multilabel: must be 'primary' or 'split', got {self.multilabel!r}")
        if not (self.broker == "embedded" or self.broker.startswith("kafka://")):
            raise ConfigError(
                f"broker: expected 'embedded' or kafka://host:port, got {self.broker!r}"
            )
        if self.snapshot_url and "://" not in self.snapshot_url:
            raise ConfigError(
                f"snapshot_url: expected a URL such as s3://bucket/prefix, got "
                f"{self.snapshot_url!r}"
            )
        if not 0.0 <= self.eval_fraction <= 0.5:
            raise ConfigError(f"eval_fraction: must be in [0, 0.5], got {self.eval_fraction!r}")
        if self.eval_capacity < 1:
            raise ConfigError(f"eval_capacity: must be >= 1, got {self.eval_capacity!r}")
        try:
            _ = self.sampler  # QuotaPolicy validates the sampler settings
        except ConfigError as e:  # name the settings, not the sampler's classes
            msg = str(e).replace("QuotaPolicy.on_overflow", "on_label_overflow")
            msg = msg.replace(f"QuotaPolicy.per_label[{EVAL_LABEL!r}]", "eval_capacity")
            raise ConfigError(msg.replace("QuotaPolicy.", "")) from None
        if self.sampler_mode not in ("uniform", "decayed"):
            raise ConfigError(
                f"sampler_mode: must be 'uniform' or 'decayed', got {self.sampler_mode!r}"
            )
        if self.sampler_mode == "decayed" and self.sampler_half_life_s <= 0:
            raise ConfigError(
                "sampler_half_life_s: decayed mode needs a half_life > 0 "
                f"(got {self.sampler_half_life_s!r})"
            )
        _validate_drift(self.drift)
        if (self.pii_hash_fields or self.pii_text_fields or self.pii_hash_ids) and len(
            self.pii_key
        ) < 16:
            raise ConfigError(
                "pii_key: set STRATA_PII_KEY (>= 16 characters) when PII fields are configured"
            )

    @property
    def substrata_grid(self) -> Grid | None:
        """The sub-strata grid, or None when off (validated: names the bad value)."""
        if not self.substrata_features and not self.substrata_edges:
            return None
        if not self.substrata_features or not self.substrata_edges:
            raise ConfigError(
                "substrata_features, substrata_edges: give both (features to cut, and where)"
            )
        names = self.features
        idx = []
        for f in self.substrata_features:
            if f in names:
                idx.append(names.index(f))
            elif f.isdigit() and int(f) < len(names):
                idx.append(int(f))
            else:
                raise ConfigError(f"substrata_features: {f!r} is not one of the features {names}")
        try:
            edges = tuple(float(e) for e in self.substrata_edges)
        except ValueError:
            raise ConfigError(
                f"substrata_edges: expected numbers, got {self.substrata_edges!r}"
            ) from None
        return Grid(tuple(idx), edges)

    @property
    def features(self) -> list[str]:
        """The feature names: ``feature_names``, or f0..f<dim-1>."""
        return list(self.feature_names) or [f"f{j}" for j in range(self.feature_dim)]

    @property
    def bootstrap(self) -> str:
        if self.broker == "embedded":
            raise ConfigError("broker: 'embedded' has no address until the broker is started")
        return self.broker.removeprefix("kafka://")

    # ------------------------------------------------------------ kafka clients
    def kafka_config(self, role: str = "client") -> dict[str, str]:
        """librdkafka settings (besides ``bootstrap.servers``) for a ``consumer``,
        ``producer`` or any other ``client``: security, then the pass-through options."""
        out: dict[str, str] = {}
        if self.kafka_security_protocol != "PLAINTEXT":
            out["security.protocol"] = self.kafka_security_protocol
        for key, value in (
            ("sasl.mechanism", self.kafka_sasl_mechanism),
            ("sasl.username", self.kafka_sasl_username),
            ("sasl.password", self.kafka_sasl_password),
            ("ssl.ca.location", self.kafka_ssl_ca),
            ("ssl.certificate.location", self.kafka_ssl_cert),
            ("ssl.key.location", self.kafka_ssl_key),
            ("ssl.key.password", self.kafka_ssl_key_password),
        ):
            if value:
                out[key] = value
        out.update(parse_options(self.kafka_options, "kafka_options"))
        if role == "consumer":
            out.update(parse_options(self.kafka_consumer_options, "kafka_consumer_options"))
        elif role == "producer":
            out.update(parse_options(self.kafka_producer_options, "kafka_producer_options"))
        return out

    # ------------------------------------------------------------ sections
    @property
    def checkpoint(self) -> CheckpointSection:
        return CheckpointSection(
            self.state_dir, self.state_sync, self.checkpoint_every_events,
            self.checkpoint_every_s, self.checkpoint_max_pending_mb * (1 << 20),
        )  # fmt: skip

    @property
    def decode(self) -> DecodeSection:
        return DecodeSection(
            self.feature_dim, self.max_event_bytes, self.max_future_s, self.max_message_bytes,
            self.max_labels_per_event, self.pii_key,
            tuple(self.pii_hash_fields), tuple(self.pii_text_fields), self.pii_hash_ids,
            self.pii_max_text_chars, tuple(self.feature_names), self.schema_registry_url,
            self.schema_dir, self.schema_registry_auth, self.schema_registry_ca,
        )  # fmt: skip

    @property
    def sampler(self) -> SamplerSection:
        return SamplerSection(
            QuotaPolicy(
                min_capacity=self.min_capacity,
                max_capacity=self.max_capacity,
                boost_capacity=self.boost_capacity,
                global_cap=self.global_cap,
                max_labels=self.max_labels,
                on_overflow=self.on_label_overflow,
                substrata=self.substrata_grid.spec if self.substrata_grid else "",
                per_label=(
                    {EVAL_LABEL: (self.eval_capacity, self.eval_capacity)}
                    if self.eval_fraction > 0
                    else {}
                ),
            ),
            self.sampler_mode,
            self.sampler_half_life_s if self.sampler_mode == "decayed" else None,
            self.sampler_seed,
            self.multilabel,
            self.eval_fraction,
            self.substrata_grid,
        )

    @property
    def snapshot(self) -> SnapshotSection:
        return SnapshotSection(
            self.snapshot_dir, self.snapshot_every_s, self.snapshot_retention,
            self.snapshot_url, self.partitions, tuple(self.features),
            self.dq_duplicate_tolerance, self.dq_source_field, self.dq_outlier_z,
            self.dq_min_rows, self.dq_exclude,
        )  # fmt: skip

    @property
    def drift(self) -> DriftSection:
        return DriftSection(
            self.drift_enabled, self.drift_topic, self.drift_every_s, self.drift_alpha,
            self.drift_correction, self.drift_min_samples, self.drift_window_half_life_s,
            self.drift_window_capacity, self.max_labels, self.drift_scarce_ratio,
            self.drift_action_cooldown_s, tuple(self.drift_actions), self.sampler_seed,
        )  # fmt: skip

    @classmethod
    def load(
        cls, path: Path | str | None = None, env: dict[str, str] | None = None, **overrides: Any
    ) -> Settings:
        env = dict(os.environ if env is None else env)
        values: dict[str, Any] = {}
        path = path or env.get("STRATA_CONFIG")
        names = {f.name for f in dataclasses.fields(cls)}
        if path:
            try:
                doc = tomllib.loads(Path(path).read_text())
            except (OSError, tomllib.TOMLDecodeError) as e:
                raise ConfigError(f"config file {path}: {e}") from e
            unknown = set(doc) - names
            if unknown:
                raise ConfigError(f"config file {path}: unknown setting(s) {sorted(unknown)}")
            values.update(doc)
        for name in names:
            v = env.get(f"STRATA_{name.upper()}")
            if v is not None:
                values[name] = v
        known = {f"STRATA_{n.upper()}" for n in names} | OTHER_VARIABLES
        typos = sorted(k for k in env if k.startswith("STRATA_") and k not in known)
        if typos:  # a misspelt variable must not be silently ignored
            hints = []
            for k in typos:
                near = difflib.get_close_matches(k, sorted(known), n=1)
                hints.append(f"{k}" + (f" (did you mean {near[0]}?)" if near else ""))
            raise ConfigError(f"environment: unknown variable(s) {', '.join(hints)}")
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)


# STRATA_* variables that are not settings: read by the command lines and the dev tools
OTHER_VARIABLES = frozenset(
    {
        "STRATA_CONFIG", "STRATA_WEB_PORT", "STRATA_LOGLEVEL", "STRATA_TANSU_BIN",
        "STRATA_REGISTRY_DIR", "STRATA_TRAINER_METRICS_PORT", "STRATA_FUZZ_EXAMPLES",
    }
)  # fmt: skip


def _coerce(name: str, typ: Any, value: Any) -> Any:
    t = str(typ)
    try:
        if t == "int":
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError
            return int(value)
        if t == "float":
            return float(value)
        if t == "Path":
            return Path(value)
        if t == "bool":
            if isinstance(value, bool):
                return value
            if isinstance(value, str) and value.lower() in ("1", "true", "yes", "on"):
                return True
            if isinstance(value, str) and value.lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError
        if t == "str":
            if not isinstance(value, str):
                raise ValueError
            return value
        if t == "list[str]":
            if isinstance(value, str):
                return [x.strip() for x in value.split(",") if x.strip()]
            if not isinstance(value, list) or not all(isinstance(x, str) for x in value):
                raise ValueError
            return value
    except (TypeError, ValueError):
        raise ConfigError(f"{name}: expected {t}, got {value!r}") from None
    return value


def add_flags(parser: argparse.ArgumentParser) -> None:
    """One ``--flag`` per setting (``checkpoint_every_events`` -> ``--checkpoint-every-events``),
    parsed as text and coerced by :class:`Settings` like an environment value; flags left
    out fall back to the environment, the file and the defaults.

    >>> p = argparse.ArgumentParser()
    >>> add_flags(p)
    >>> a = p.parse_args(["--checkpoint-every-events", "1000", "--state-sync", "on"])
    >>> Settings.load(env={}, **flag_values(a)).checkpoint.every_events
    1000
    """
    g = parser.add_argument_group("settings (each also STRATA_<NAME> and a TOML key)")
    docs = _field_docs()
    defaults = Settings.__dataclass_fields__
    for f in dataclasses.fields(Settings):
        d = defaults[f.name]
        if f.name in SECRET_FIELDS:
            shown = "a secret: give it through the environment"
        elif d.default is not dataclasses.MISSING:
            shown = f"default {_show(d.default)}"
        elif d.default_factory is not dataclasses.MISSING:
            shown = f"default {_show(d.default_factory())}"
        else:
            shown = "required"
        doc = docs.get(f.name, "")
        g.add_argument(
            "--" + f.name.replace("_", "-"),
            dest=f"setting_{f.name}",
            default=None,
            metavar=str(f.type).upper().replace("[STR]", ",..."),
            help=f"{doc + '; ' if doc else ''}{shown}; env STRATA_{f.name.upper()}".replace(
                "%", "%%"
            ),
        )


def _show(value: Any) -> str:
    if isinstance(value, list | tuple):
        return ",".join(map(str, value)) or "none"
    if value == "":
        return "none"
    return str(value)


def _field_docs() -> dict[str, str]:
    """Each setting's comment in this file (the one on its line, or the block above it),
    for ``--help``."""
    import inspect
    import re

    docs: dict[str, str] = {}
    block: list[str] = []
    field_re = re.compile(r"^    (\w+): [^=]+(?:=.*?)?(?:#\s*(.*))?$")
    for line in inspect.getsource(Settings).splitlines():
        stripped = line.strip()
        if stripped.startswith("#"):
            block.append(stripped.lstrip("# ").strip())
            continue
        m = field_re.match(line)
        if m and not stripped.startswith(("def ", "@")):
            parts = [" ".join(block)] if block else []
            if m.group(2):
                parts.append(m.group(2).strip())
            docs[m.group(1)] = "; ".join(p for p in parts if p)
        block = []
    return docs


def flag_values(args: argparse.Namespace) -> dict[str, Any]:
    """The settings given as flags (``None`` for those left out)."""
    return {f.name: getattr(args, f"setting_{f.name}", None) for f in dataclasses.fields(Settings)}
