"""Settings read once from REFRESHD_* environment variables."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from pathlib import Path

from refreshd import constants as C


class SettingsError(ValueError):
    """An environment variable has a value the service cannot use."""


@dataclasses.dataclass(frozen=True, slots=True)
class Settings:
    """Everything the service reads from its environment, read once at start-up."""

    host: str = C.DEFAULT_HOST
    port: int = C.DEFAULT_PORT
    workers: int = 1
    redis_url: str | None = None  # None: start the embedded Valkey under data_dir
    redis_cluster: tuple[str, ...] = ()  # host:port seeds; switches to Redis Cluster
    data_dir: Path = Path("var")
    appendfsync: str = "always"  # fsync before the reply: SIGKILL-safe
    min_interval_s: int = C.MIN_INTERVAL_S
    fallback_interval_s: int = C.FALLBACK_INTERVAL_S
    threshold: float = C.DEFAULT_THRESHOLD
    # Share of intent decisions (users outside experiments) that refresh on a coin flip instead
    # of the model: exploration traffic, logged `explore`, from which retraining measures what
    # a refresh gains by list age (intent.staleness). 0 turns it off.
    explore_share: float = 0.0
    max_body_bytes: int = C.MAX_BODY_BYTES
    store_timeout_s: float = C.STORE_TIMEOUT_S
    # Replicas whose AOF must hold a write before it is acknowledged (WAITAOF 1 <n>); None: 1 on
    # a Redis Cluster with replicas, else 0.
    ack_replicas: int | None = None
    ack_timeout_ms: int = C.ACK_TIMEOUT_MS
    log_maxlen: int = C.LOG_MAXLEN
    log_level: str = "INFO"
    access_log: bool = False
    catalogue_seed: int = 0
    rules_file: Path | None = None  # JSON object of trigger id → rule, installed at start
    admin_token: str | None = None  # bearer token for admin writes; unset: no auth
    user_rate_per_s: float = C.USER_RATE_PER_S
    user_burst: int = C.USER_BURST
    bootstrap_model: bool = True  # train a first model on a synthetic log when none exists
    retrain_interval_s: float = C.RETRAIN_INTERVAL_S  # 0: only on demand
    full_retrain_s: float = C.FULL_RETRAIN_S  # how often the scheduled retrain starts afresh
    score_timeout_ms: float = C.SCORE_TIMEOUT_MS
    score_batch_wait_ms: float = C.SCORE_BATCH_WAIT_MS
    score_batch_max: int = C.SCORE_BATCH_MAX
    user_cache_size: int = C.USER_CACHE_SIZE  # users cached per worker (0: none)
    config_poll_s: float = C.CONFIG_POLL_S
    shadow_queue_max: int = C.SHADOW_QUEUE_MAX  # decisions waiting for the challengers
    shadow_log_maxlen: int = C.SHADOW_LOG_MAXLEN  # shadow rows kept per shard per challenger
    sweep_interval_s: float = C.SWEEP_INTERVAL_S
    psi_window: int = C.PSI_WINDOW  # recent scores per model version the PSI gauge reads
    calibration_interval_s: float = C.CALIBRATION_INTERVAL_S  # 0: no calibration gauge
    # An OSM-style tile URL template (`https://…/{z}/{x}/{y}.png`) the console's fence map
    # draws under the fences; None: a local metric projection, nothing fetched.
    console_tiles: str | None = None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Build settings from REFRESHD_* variables (os.environ by default)."""
        env = os.environ if environ is None else environ

        def get(name: str) -> str | None:
            value = env.get(f"REFRESHD_{name}")
            return value if value not in (None, "") else None

        def integer(name: str, default: int, lo: int, hi: int) -> int:
            raw = get(name)
            if raw is None:
                return default
            try:
                value = int(raw)
            except ValueError:
                raise SettingsError(f"REFRESHD_{name}={raw!r} is not an integer") from None
            if not lo <= value <= hi:
                raise SettingsError(f"REFRESHD_{name}={value} is outside [{lo}, {hi}]")
            return value

        def number(name: str, default: float, lo: float, hi: float) -> float:
            raw = get(name)
            if raw is None:
                return default
            try:
                value = float(raw)
            except ValueError:
                raise SettingsError(f"REFRESHD_{name}={raw!r} is not a number") from None
            if not lo <= value <= hi:
                raise SettingsError(f"REFRESHD_{name}={value} is outside [{lo}, {hi}]")
            return value

        def flag(name: str, default: bool) -> bool:
            raw = get(name)
            if raw is None:
                return default
            if raw.lower() in ("1", "true", "yes", "on"):
                return True
            if raw.lower() in ("0", "false", "no", "off"):
                return False
            raise SettingsError(f"REFRESHD_{name}={raw!r} is not a boolean")

        cluster_raw = get("REDIS_CLUSTER")
        cluster = (
            tuple(s.strip() for s in cluster_raw.split(",") if s.strip()) if cluster_raw else ()
        )
        for node in cluster:
            host, _, port = node.rpartition(":")
            if not host or not port.isdigit():
                raise SettingsError(f"REFRESHD_REDIS_CLUSTER node {node!r} is not host:port")
        appendfsync = get("APPENDFSYNC") or "always"
        if appendfsync not in ("always", "everysec"):
            raise SettingsError("REFRESHD_APPENDFSYNC must be 'always' or 'everysec'")
        log_level = (get("LOG_LEVEL") or "INFO").upper()
        if log_level not in ("DEBUG", "INFO", "WARNING", "ERROR"):
            raise SettingsError(f"REFRESHD_LOG_LEVEL={log_level!r} is not a log level")
        tiles = get("CONSOLE_TILES")
        if tiles is not None and (
            not tiles.startswith(("https://", "http://"))
            or not all(k in tiles for k in ("{z}", "{x}", "{y}"))
        ):
            raise SettingsError(
                "REFRESHD_CONSOLE_TILES must be an http(s) URL template with {z}, {x} and {y}"
            )
        return cls(
            host=get("HOST") or C.DEFAULT_HOST,
            port=integer("PORT", C.DEFAULT_PORT, 0, 65535),
            workers=integer("WORKERS", 1, 1, 64),
            redis_url=get("REDIS_URL"),
            redis_cluster=cluster,
            data_dir=Path(get("DATA_DIR") or "var"),
            appendfsync=appendfsync,
            min_interval_s=integer("MIN_INTERVAL_S", C.MIN_INTERVAL_S, 0, 86_400),
            fallback_interval_s=integer("FALLBACK_INTERVAL_S", C.FALLBACK_INTERVAL_S, 0, 86_400),
            threshold=number("THRESHOLD", C.DEFAULT_THRESHOLD, 0.0, 1.0),
            explore_share=number("EXPLORE_SHARE", 0.0, 0.0, 1.0),
            max_body_bytes=integer("MAX_BODY_BYTES", C.MAX_BODY_BYTES, 1024, 64 << 20),
            store_timeout_s=number("STORE_TIMEOUT_S", C.STORE_TIMEOUT_S, 0.01, 30.0),
            ack_replicas=integer("ACK_REPLICAS", -1, 0, 16) if get("ACK_REPLICAS") else None,
            ack_timeout_ms=integer("ACK_TIMEOUT_MS", C.ACK_TIMEOUT_MS, 1, 60_000),
            log_maxlen=integer("LOG_MAXLEN", C.LOG_MAXLEN, 1000, 100_000_000),
            log_level=log_level,
            access_log=flag("ACCESS_LOG", False),
            rules_file=Path(rf) if (rf := get("RULES_FILE")) else None,
            admin_token=get("ADMIN_TOKEN"),
            user_rate_per_s=number("USER_RATE_PER_S", C.USER_RATE_PER_S, 0.0, 10_000.0),
            user_burst=integer("USER_BURST", C.USER_BURST, 1, 100_000),
            bootstrap_model=flag("BOOTSTRAP_MODEL", True),
            retrain_interval_s=number(
                "RETRAIN_INTERVAL_S", C.RETRAIN_INTERVAL_S, 0.0, 30 * 86_400.0
            ),
            full_retrain_s=number("FULL_RETRAIN_S", C.FULL_RETRAIN_S, 0.0, 30 * 86_400.0),
            score_timeout_ms=number("SCORE_TIMEOUT_MS", C.SCORE_TIMEOUT_MS, 1.0, 10_000.0),
            score_batch_wait_ms=number("SCORE_BATCH_WAIT_MS", C.SCORE_BATCH_WAIT_MS, 0.0, 50.0),
            score_batch_max=integer("SCORE_BATCH_MAX", C.SCORE_BATCH_MAX, 1, 10_000),
            user_cache_size=integer("USER_CACHE_SIZE", C.USER_CACHE_SIZE, 0, 10_000_000),
            config_poll_s=number("CONFIG_POLL_S", C.CONFIG_POLL_S, 0.1, 60.0),
            shadow_queue_max=integer("SHADOW_QUEUE_MAX", C.SHADOW_QUEUE_MAX, 1, 10_000_000),
            shadow_log_maxlen=integer("SHADOW_LOG_MAXLEN", C.SHADOW_LOG_MAXLEN, 100, 10_000_000),
            sweep_interval_s=number("SWEEP_INTERVAL_S", C.SWEEP_INTERVAL_S, 0.1, 3600.0),
            catalogue_seed=integer("CATALOGUE_SEED", 0, 0, 2**31 - 1),
            psi_window=integer("PSI_WINDOW", C.PSI_WINDOW, 100, 1_000_000),
            calibration_interval_s=number(
                "CALIBRATION_INTERVAL_S", C.CALIBRATION_INTERVAL_S, 0.0, 86_400.0
            ),
            console_tiles=tiles,
        )

    def replace(self, **changes: object) -> Settings:
        """Return a copy with some fields changed."""
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]
