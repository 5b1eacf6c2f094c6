from __future__ import annotations

from pathlib import Path

import pytest

from stratastream.errors import ConfigError
from streamproc.settings import Settings


def test_precedence_file_env_flags(tmp_path: Path) -> None:
    cfg = tmp_path / "s.toml"
    cfg.write_text('partitions = 8\nmax_capacity = 500\nevents_topic = "logs"\n')
    s = Settings.load(cfg, env={"STRATA_MAX_CAPACITY": "700"}, partitions=2)
    assert (s.partitions, s.max_capacity, s.events_topic) == (2, 700, "logs")
    assert s.sampler.policy.max_capacity == 700


@pytest.mark.parametrize(
    "env,match",
    [
        ({"STRATA_PARTITIONS": "four"}, "partitions: expected int, got 'four'"),
        ({"STRATA_PARTITIONS": "0"}, "partitions: must be > 0"),
        ({"STRATA_MULTILABEL": "all"}, "multilabel: must be 'primary' or 'split'"),
        ({"STRATA_BROKER": "localhost:9092"}, "broker: expected 'embedded' or kafka://"),
        ({"STRATA_MIN_CAPACITY": "5000"}, "min_capacity"),
        ({"STRATA_SAMPLER_MODE": "decayed"}, "half_life"),
        ({"STRATA_PII_HASH_FIELDS": "user"}, "pii_key"),
    ],
)
def test_bad_values_name_the_setting(env, match) -> None:
    with pytest.raises(ConfigError, match=match):
        Settings.load(env=env)


def test_bad_file_is_named(tmp_path: Path) -> None:
    cfg = tmp_path / "s.toml"
    cfg.write_text("partitons = 3\n")
    with pytest.raises(ConfigError, match=r"unknown setting\(s\) \['partitons'\]"):
        Settings.load(cfg, env={})
    cfg.write_text("partitions = \n")
    with pytest.raises(ConfigError, match="config file"):
        Settings.load(cfg, env={})
    with pytest.raises(ConfigError, match="config file"):
        Settings.load(tmp_path / "missing.toml", env={})


def test_max_labels_per_event_is_a_setting_and_reaches_both_decode_paths() -> None:
    import orjson

    from streamproc.decode.decoding import decode_batch
    from streamproc.worker.assembly import limits

    lim = limits(Settings.load(env={"STRATA_MAX_LABELS_PER_EVENT": "3"}).decode)
    assert lim.max_labels_per_event == 3
    ok = orjson.dumps({"ts": 1.0, "labels": ["a", "b", "c"], "features": [1, 2, 3, 4]})
    many = orjson.dumps({"ts": 1.0, "labels": ["a", "b", "c", "d"], "features": [1, 2, 3, 4]})
    escaped = orjson.dumps({"ts": 1.0, "labels": ["é", "b", "c", "d"], "features": [1, 2, 3, 4]})
    b = decode_batch("e", 0, [(0, ok, 2.0), (1, many, 2.0), (2, escaped, 2.0)], lim, now=2.0)
    assert b.offsets.tolist() == [0]
    assert [r.offset for r in b.rejects] == [1, 2]
    assert all("label" in r.reason for r in b.rejects)
    with pytest.raises(ConfigError, match="max_labels_per_event"):
        Settings.load(env={"STRATA_MAX_LABELS_PER_EVENT": "0"})


def test_a_misspelt_environment_variable_is_an_error() -> None:
    with pytest.raises(ConfigError, match="STRATA_MAX_CAPACTY \\(did you mean STRATA_MAX_CAPACITY"):
        Settings.load(env={"STRATA_MAX_CAPACTY": "500"})
    Settings.load(env={"STRATA_WEB_PORT": "1", "OTHER_TOOL_VAR": "x"})  # not ours, or known
