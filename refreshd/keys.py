"""Typed application keys: what the app holds, by name and type."""

from __future__ import annotations

from collections.abc import Callable

from aiohttp import web

from dedupe import Catalogue
from refreshd.expbook import ExperimentBook
from refreshd.fencebook import FenceBook
from refreshd.metrics import Metrics
from refreshd.registry import ModelRegistry
from refreshd.rulebook import RuleBook
from refreshd.rules import Rule
from refreshd.service import Service
from refreshd.settings import Settings
from refreshd.store import Store

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
CLOCK: web.AppKey[Callable[[], int]] = web.AppKey("clock")
