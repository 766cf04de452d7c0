"""Grow the intent booster on a Dask cluster (LightGBM's data-parallel learner, `lightgbm.dask`).

Only the fitting step moves: `intent.train.train(dataset, fitter=DaskFitter(client))` still
splits by time, tags the model and scores it on the same holdout as training here. The rows
are built on this machine (from the store's logs) and each worker is sent its own slice; the
workers grow every tree together, each on its rows.

LightGBM's Dask interface cannot stop early (each worker would judge its own share of the
holdout and stop on another round), so the cluster grows `num_boost_round` trees and the
round is picked here, on the whole holdout, by the rule `lightgbm.early_stopping` applies.

Dask is an optional extra (`pip install 'refreshd[distributed]'`): nothing here imports it
until `connect` is called, and `import intent.train` never does.
"""

from __future__ import annotations

import contextlib
import math
import os
import warnings
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import lightgbm as lgb
import numpy as np

from intent.dataset import Dataset
from intent.train import Fitted, logloss

if TYPE_CHECKING:
    from distributed import Client

__all__ = ["DaskFitter", "DaskUnavailable", "best_round", "connect", "parse_local"]

INSTALL_HINT = "pip install 'refreshd[distributed]'"
# How long `connect` waits for the scheduler to answer and for a first worker to join.
CONNECT_TIMEOUT_S = 10.0
LOCAL = "local"


class DaskUnavailable(RuntimeError):
    """Training on Dask cannot start: the extra is not installed or the cluster is not there."""


def parse_local(spec: str) -> int | None:
    """Return the worker count of `local` / `local:N` (one per core for `local`), else None."""
    if spec != LOCAL and not spec.startswith(f"{LOCAL}:"):
        return None
    _, _, count = spec.partition(":")
    if not count:
        return os.cpu_count() or 1
    if not count.isdigit() or not 1 <= int(count) <= 256:
        raise DaskUnavailable(f"--dask {spec}: N in local:N must be a whole number in [1, 256]")
    return int(count)


def _require_extra() -> None:
    """Import what `lightgbm.dask` needs, or say which extra brings it."""
    try:
        import dask.array
        import dask.dataframe  # noqa: F401 - lightgbm.dask imports it to check its input
        import distributed  # noqa: F401
        import pandas  # noqa: F401
        import sklearn  # noqa: F401
    except ImportError as exc:
        raise DaskUnavailable(
            f"training on Dask needs {exc.name or 'dask'}, which is not installed: {INSTALL_HINT}"
        ) from None


@contextlib.contextmanager
def connect(spec: str, *, timeout_s: float = CONNECT_TIMEOUT_S) -> Iterator[Client]:
    """Yield a client of the scheduler at `spec`, or of a cluster started here for `local[:N]`.

    `local[:N]` runs N workers as threads of this process (LightGBM releases the GIL while it
    grows trees), one LightGBM machine each. Raises DaskUnavailable within `timeout_s` when
    the extra is missing, the scheduler does not answer or no worker joins it.
    """
    workers = parse_local(spec)
    _require_extra()
    from distributed import Client, LocalCluster

    with contextlib.ExitStack() as stack:
        if workers is not None:
            cluster = LocalCluster(
                n_workers=workers,
                threads_per_worker=1,
                processes=False,
                dashboard_address=None,
            )
            stack.enter_context(cluster)
            address: Any = cluster
        else:
            address = _checked_address(spec)
        try:
            client = Client(address, timeout=timeout_s, set_as_default=False)
        except (OSError, TimeoutError) as exc:
            raise DaskUnavailable(
                f"no Dask scheduler answered at {spec} within {timeout_s:g} s ({exc}); "
                "start one, or pass --dask local:N to start workers here"
            ) from None
        stack.enter_context(client)
        try:
            client.wait_for_workers(1, timeout=timeout_s)
        except TimeoutError:
            raise DaskUnavailable(
                f"the Dask scheduler at {spec} has no workers after {timeout_s:g} s"
            ) from None
        yield client


def _checked_address(spec: str) -> str:
    """Return the scheduler address normalised (tcp:// added), or say why it is none."""
    from distributed.comm import get_address_host_port, normalize_address

    try:
        address = normalize_address(spec)
        get_address_host_port(address)  # a host and a port this command can dial
    except ValueError as exc:
        raise DaskUnavailable(
            f"--dask {spec}: {exc}; give a scheduler as tcp://host:port (or tls://), or local:N"
        ) from None
    return address


class DaskFitter:
    """An `intent.train.Fitter` that grows the booster on the workers of a Dask client."""

    def __init__(self, client: Client) -> None:
        self.client = client

    def __call__(
        self,
        fit: Dataset,
        holdout: Dataset,
        params: dict[str, Any],
        *,
        num_boost_round: int,
        early_stopping_rounds: int,
        init_model: str | None = None,
    ) -> Fitted:
        if init_model is not None:  # the continuous retrain runs in the service, not on Dask
            raise ValueError("the Dask fitter trains new models only, not warm starts")
        if params.get("metric") != "binary_logloss":
            raise ValueError("the Dask fitter picks the round on binary_logloss only")
        import dask.array as da
        from lightgbm.dask import DaskLGBMClassifier

        workers = sorted(self.client.scheduler_info()["workers"])
        parts = min(len(workers), len(fit))
        bounds = np.linspace(0, len(fit), parts + 1).astype(np.int64)
        x_parts, y_parts = [], []
        for worker, lo, hi in zip(workers, bounds[:-1], bounds[1:], strict=False):
            # Each slice goes only to the worker that trains on it; X and y stay together.
            x, y = self.client.scatter([fit.X[lo:hi], fit.y[lo:hi]], workers=[worker])
            x_parts.append(da.from_delayed(x, shape=(hi - lo, fit.X.shape[1]), dtype=fit.X.dtype))
            y_parts.append(da.from_delayed(y, shape=(hi - lo,), dtype=fit.y.dtype))
        # The workers run one LightGBM thread per Dask thread: a thread count is theirs to set.
        p = {k: v for k, v in params.items() if k != "num_threads"}
        model = DaskLGBMClassifier(client=self.client, n_estimators=num_boost_round, **p)
        # lightgbm.dask waits on the parts through the current client, whatever it was given.
        with self.client.as_current(), warnings.catch_warnings():
            # It also warns that the estimator's own n_jobs=None "will be ignored", every fit.
            warnings.filterwarnings("ignore", message="Parameter n_jobs will be ignored")
            model.fit(
                da.concatenate(x_parts),
                da.concatenate(y_parts),
                feature_name=list(fit.feature_names),
            )
        booster = model.booster_
        best, rounds_run = best_round(booster, holdout, early_stopping_rounds)
        return Fitted(booster, best, rounds_run, f"dask: {len(workers)} workers")


def best_round(booster: lgb.Booster, holdout: Dataset, patience: int) -> tuple[int, int]:
    """Return (best iteration, rounds looked at) by `lightgbm.early_stopping`'s rule.

    Walks the trees in order, adding each one's leaf values to the holdout's raw scores, and
    stops `patience` rounds after the last round that lowered the logloss.
    """
    leaves = np.asarray(booster.predict(holdout.X, pred_leaf=True)).reshape(len(holdout), -1)
    raw = np.zeros(len(holdout), dtype=np.float64)
    best_loss, best = math.inf, 0
    rounds = leaves.shape[1]
    for tree in range(rounds):
        used, rows = np.unique(leaves[:, tree], return_inverse=True)
        values = np.array([booster.get_leaf_output(tree, int(leaf)) for leaf in used])
        raw += values[rows]
        loss = logloss(holdout.y, 1.0 / (1.0 + np.exp(-raw)))
        if loss < best_loss:
            best_loss, best = loss, tree
        elif tree - best >= patience:
            return best + 1, tree + 1
    return best + 1, rounds
