"""Typed application keys: what the app holds, by name and type.

The value types are imported for the type checker only: importing the keys (as the JSON codec
and the middlewares do) must not load the service, the store, the model (lightgbm, scipy) or
the geometry (shapely).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from aiohttp import web

if TYPE_CHECKING:
    from refreshd.core.rules import Rule
    from refreshd.live.expbook import ExperimentBook
    from refreshd.live.fencebook import FenceBook
    from refreshd.live.guardrails import GuardrailMeter
    from refreshd.live.holdoutbook import HoldoutBook
    from refreshd.live.policybook import PolicyBook
    from refreshd.live.registry import ModelRegistry
    from refreshd.live.rulebook import RuleBook
    from refreshd.live.service import Service
    from refreshd.live.shadow import Shadow
    from refreshd.live.storehealth import StoreHealth
    from refreshd.live.training import Trainer
    from refreshd.metrics import Metrics
    from refreshd.settings import Settings
    from refreshd.store.protocol import Store
    from synth.catalogue import Catalogue

SETTINGS: web.AppKey[Settings] = web.AppKey("settings")
STORE: web.AppKey[Store] = web.AppKey("store")
STORE_HEALTH: web.AppKey[StoreHealth] = web.AppKey("store_health")
METRICS: web.AppKey[Metrics] = web.AppKey("metrics")
SERVICE: web.AppKey[Service] = web.AppKey("service")
CATALOGUE: web.AppKey[Catalogue] = web.AppKey("catalogue")
RULEBOOK: web.AppKey[RuleBook] = web.AppKey("rulebook")
RULES_FILE: web.AppKey[dict[str, Rule]] = web.AppKey("rules_file")
EXPERIMENTS: web.AppKey[ExperimentBook] = web.AppKey("experiments")
HOLDOUTS: web.AppKey[HoldoutBook] = web.AppKey("holdouts")
GUARDRAILS: web.AppKey[GuardrailMeter] = web.AppKey("guardrails")  # per-request guardrail sums
REGISTRY: web.AppKey[ModelRegistry] = web.AppKey("registry")
SHADOW: web.AppKey[Shadow] = web.AppKey("shadow")  # this worker's challengers
FENCES: web.AppKey[FenceBook] = web.AppKey("fences")
POLICY: web.AppKey[PolicyBook] = web.AppKey("policy")  # app[POLICY].doc: the ladder's document
CLOCK: web.AppKey[Callable[[], int]] = web.AppKey("clock")
TRAINER: web.AppKey[Trainer] = web.AppKey("trainer")  # the scheduled retraining (app._jobs_ctx)
