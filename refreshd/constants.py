"""Tunable defaults, each with the reason for its value."""

from __future__ import annotations

# Port 8080: unprivileged, the usual choice for a sidecar-style HTTP service.
DEFAULT_PORT = 8080
DEFAULT_HOST = "127.0.0.1"

# Two refreshes closer than 30 s look like flicker to a user and waste a recommender call.
MIN_INTERVAL_S = 30
# The reference "refresh every N minutes" rule the intent policy is measured against.
FALLBACK_INTERVAL_S = 300
# Default intent threshold when no experiment assigns one (issue: time).
DEFAULT_THRESHOLD = 0.3
# A frequency cap above one refresh a minute all day caps nothing; it also bounds the refresh
# times a user's state keeps for the cap.
MAX_CAP_PER_DAY = 1440

# 1 MiB holds a full 1000-event batch with props; anything bigger is a client bug.
MAX_BODY_BYTES = 1 << 20
# Most events one request may carry; a device with more sends several batches.
MAX_EVENTS_PER_BATCH = 1000
# Device clocks drift; more than an hour ahead is a broken clock, not drift.
MAX_FUTURE_SKEW_MS = 3_600_000
# Devices buffer events offline for days; older than a week is not worth learning from.
MAX_PAST_AGE_MS = 7 * 24 * 3_600_000

# A retried batch arrives within minutes; a day covers a device that was offline overnight.
BATCH_MARK_TTL_S = 24 * 3600
# A directive the device never acknowledges is dropped after a day (it is stale by then).
DIRECTIVE_TTL_S = 24 * 3600
# Cap per user so a misbehaving rule cannot grow a device's response without bound.
MAX_PENDING_DIRECTIVES = 50
# Most ack ids a device sends in one request.
MAX_ACKS = 100

# Capped logs: ~1 M entries is a few days of training data for a mid-size app in < 1 GiB.
LOG_MAXLEN = 1_000_000
# Policy documents kept by version for replay: a policy changes a few times a day at most, so
# 1000 versions outlive the decision log (a few days) by far, in well under a megabyte.
POLICY_HISTORY = 1000
# Most decisions one replay re-runs: a few seconds of CPU and memory for one request.
REPLAY_MAX_DECISIONS = 10_000
# Decision ids kept per user for `GET /v1/users/{id}/decisions` (the rows stay in the log).
USER_DECISIONS_KEPT = 20

# Store calls that take longer than this are treated as an outage (degrade, answer 503).
STORE_TIMEOUT_S = 0.5
# How long an acknowledged write waits for WAITAOF (the primary's and its replicas' AOF fsync)
# before it answers 503 instead. Half the store timeout: a replica on the same network fsyncs in
# a few ms; one that takes a quarter second is stalled, and the device should retry rather than
# wait.
ACK_TIMEOUT_MS = 250
# Request size bounds below aiohttp's parser limits, so an oversized request gets the service's
# error body (414 / 431) instead of aiohttp's plain-text 400. Every query parameter of the API
# is an id or a flag (ids ≤ 128 characters), and the only long header is Authorization.
MAX_QUERY_BYTES = 2048
MAX_HEADER_BYTES = 4096
# aiohttp's own limits (its defaults), the backstop: a longer request line or header is refused
# by the HTTP parser itself with a 400.
HTTP_MAX_LINE_SIZE = 8190
HTTP_MAX_FIELD_SIZE = 8190
# What a 503 asks the device to wait before retrying a write.
RETRY_AFTER_S = 5
# Compare-and-set retries for one user's state before giving up with 409.
CAS_RETRIES = 8

# Users swept per scheduler tick for trailing-negation rules; bounded so one tick stays short.
SWEEP_BATCH = 500
# How often workers look for changed rules, fences, experiments and models: a change must
# reach every worker within 2 s, and polling a version key once a second is one small call.
CONFIG_POLL_S = 1.0
# How often the sweep for trailing-negation rules runs.
SWEEP_INTERVAL_S = 5.0

# A device polls every few seconds at most; 20/s sustained (burst 40) is a runaway client.
USER_RATE_PER_S = 20.0
USER_BURST = 40

# Continue the model on newly matured labels every 2 min: a model then lags the newest decision
# by at most the label window (10 min) + this interval + a run's duration, inside the window +
# 5 min target (refreshd_model_freshness_seconds), with a few minutes left for the run.
RETRAIN_INTERVAL_S = 120.0
# Train a new model from scratch every 6 h: intent patterns drift over a day, and a chain of
# warm starts would otherwise only grow.
FULL_RETRAIN_S = 6 * 3600.0
# A score later than this is not worth waiting for: decide by the fallback rule (degraded).
SCORE_TIMEOUT_MS = 25.0
# Decisions scored in the same event-loop turn share one LightGBM call. Waiting longer for more
# rows bought ~nothing once single rows took LightGBM's fast path (~5 µs a row, next to ~0.85 ms
# a decision) and cost up to the wait in latency, so the default is no wait.
SCORE_BATCH_WAIT_MS = 0.0
# Scores per worker and model version the drift gauge (PSI) compares with the training scores:
# minutes of traffic on a busy worker, enough that PSI's sampling noise (~9 / n) stays < 0.01.
PSI_WINDOW = 5000
# How often each worker measures online calibration on matured decisions: labels mature over
# half an hour, so every 5 min follows them closely for a second or two of CPU.
CALIBRATION_INTERVAL_S = 300.0
SCORE_BATCH_MAX = 256

# /v1/decide carries a position without its accuracy; assume a typical urban phone fix.
DECIDE_FIX_ACCURACY_M = 30.0

# Users whose state a worker keeps between requests (saves one store round trip each).
USER_CACHE_SIZE = 100_000

# When the device should check again if nothing else says so.
NEXT_CHECK_S = 60

# Identifiers become parts of Redis keys: no braces (hash tags), no spaces, bounded length.
# `(?!\n)`: Python's `$` also matches before a final newline; JSON Schema's does not.
ID_PATTERN = r"^[A-Za-z0-9._:@\-]+$(?!\n)"
ID_MAX_LEN = 128

# Shadow (challenger) scoring. Decisions wait for the background scorer in a queue this long at
# most; beyond it they are dropped (counted), never slowing a decision down: ~10 s of a busy
# worker's scored decisions, a few MB.
SHADOW_QUEUE_MAX = 10_000
# Rows the background scorer takes per model call: LightGBM's per-row cost dominates past this.
SHADOW_BATCH_MAX = 256
# The background scorer lets rows gather this long before a batch: a thread hop, a model call
# and a store round trip per batch instead of per decision. Nobody waits for shadow rows.
SHADOW_BATCH_WAIT_S = 0.1
# Shadow rows kept per shard of a challenger's log (16 shards): 320 000 rows of ~300 bytes,
# ~100 MB, which at up to ~400 shadowed decisions/s still reaches back the ~12 min a label
# needs to mature.
SHADOW_LOG_MAXLEN = 20_000
# A stopped challenger's log stays readable for its report this long after its last row, then
# expires: memory stays bounded however many models were ever shadowed.
SHADOW_LOG_TTL_S = 7 * 86_400
# Challengers shadowed at once: each one adds a model call per scored decision.
SHADOW_MODELS_MAX = 3
# Devices upload events in batches a minute or two late: a label is final this long after its
# click window closes.
SHADOW_LABEL_GRACE_S = 120
