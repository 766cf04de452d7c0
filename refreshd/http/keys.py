"""Typed application keys: what the app holds, by name and type."""

from __future__ import annotations

from collections.abc import Callable

from aiohttp import web

from refreshd.core.rules import Rule
from refreshd.live.expbook import ExperimentBook
from refreshd.live.fencebook import FenceBook
from refreshd.live.policybook import PolicyBook
from refreshd.live.registry import ModelRegistry
from refreshd.live.rulebook import RuleBook
from refreshd.live.service import Service
from refreshd.metrics import Metrics
from refreshd.settings import Settings
from refreshd.store.protocol import Store
from synth.catalogue import Catalogue

SETTINGS = web.AppKey("settings", Settings)
STORE: web.AppKey[Store] = web.AppKey("store")
METRICS = web.AppKey("metrics", Metrics)
SERVICE = web.AppKey("service", Service)
CATALOGUE = web.AppKey("catalogue", Catalogue)
RULEBOOK = web.AppKey("rulebook", RuleBook)
RULES_FILE: web.AppKey[dict[str, Rule]] = web.AppKey("rules_file")
EXPERIMENTS = web.AppKey("experiments", ExperimentBook)
REGISTRY = web.AppKey("registry", ModelRegistry)
FENCES = web.AppKey("fences", FenceBook)
POLICY = web.AppKey("policy", PolicyBook)  # app[POLICY].doc: the decision ladder's document
CLOCK: web.AppKey[Callable[[], int]] = web.AppKey("clock")
