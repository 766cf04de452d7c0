from pathlib import Path

import pytest

from refreshd.settings import Settings, SettingsError


def test_defaults_without_environment() -> None:
    s = Settings.from_env({})
    assert (s.host, s.port, s.workers, s.redis_url) == ("127.0.0.1", 8080, 1, None)
    assert s.data_dir == Path("var")


def test_reads_every_variable() -> None:
    s = Settings.from_env(
        {
            "REFRESHD_PORT": "9000",
            "REFRESHD_WORKERS": "3",
            "REFRESHD_REDIS_URL": "redis://x:1/0",
            "REFRESHD_REDIS_CLUSTER": "a:1, b:2",
            "REFRESHD_DATA_DIR": "/tmp/d",
            "REFRESHD_MIN_INTERVAL_S": "10",
            "REFRESHD_FALLBACK_INTERVAL_S": "600",
            "REFRESHD_MAX_BODY_BYTES": "4096",
            "REFRESHD_LOG_LEVEL": "debug",
            "REFRESHD_ACCESS_LOG": "yes",
            "REFRESHD_APPENDFSYNC": "everysec",
            "REFRESHD_EXPLORE_SHARE": "0.05",
        }
    )
    assert s.port == 9000 and s.workers == 3 and s.redis_url == "redis://x:1/0"
    assert s.redis_cluster == ("a:1", "b:2") and s.data_dir == Path("/tmp/d")
    assert (s.min_interval_s, s.fallback_interval_s, s.max_body_bytes) == (10, 600, 4096)
    assert s.log_level == "DEBUG" and s.access_log and s.appendfsync == "everysec"
    assert s.explore_share == 0.05


@pytest.mark.parametrize(
    ("name", "value", "needle"),
    [
        ("PORT", "http", "not an integer"),
        ("PORT", "70000", "outside"),
        ("WORKERS", "0", "outside"),
        ("THRESHOLD", "1.5", "outside"),
        ("EXPLORE_SHARE", "-0.1", "outside"),
        ("REDIS_CLUSTER", "nohost", "host:port"),
        ("APPENDFSYNC", "no", "always"),
        ("LOG_LEVEL", "loud", "log level"),
        ("ACCESS_LOG", "maybe", "boolean"),
    ],
)
def test_bad_values_name_the_variable(name: str, value: str, needle: str) -> None:
    with pytest.raises(SettingsError, match=needle) as info:
        Settings.from_env({f"REFRESHD_{name}": value})
    assert name in str(info.value) or needle in str(info.value)


def test_settings_are_frozen() -> None:
    s = Settings.from_env({})
    with pytest.raises(AttributeError):
        s.port = 1  # type: ignore[misc]
    assert s.replace(port=1).port == 1 and s.port == 8080


def test_ack_settings() -> None:
    assert Settings.from_env({}).ack_replicas is None  # auto: 1 on a cluster with replicas
    got = Settings.from_env({"REFRESHD_ACK_REPLICAS": "0", "REFRESHD_ACK_TIMEOUT_MS": "100"})
    assert (got.ack_replicas, got.ack_timeout_ms) == (0, 100)
    assert Settings.from_env({"REFRESHD_ACK_REPLICAS": "2"}).ack_replicas == 2
    for bad in ({"REFRESHD_ACK_REPLICAS": "-1"}, {"REFRESHD_ACK_TIMEOUT_MS": "0"}):
        with pytest.raises(SettingsError):
            Settings.from_env(bad)
