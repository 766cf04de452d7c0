"""Growing the booster on a Dask cluster: same holdout, same rule for the round, a model as good."""

from __future__ import annotations

import socket
import sys
from collections.abc import Iterator

import lightgbm as lgb
import numpy as np
import pytest
from distributed import LocalCluster

from intent.dataset import Dataset
from intent.distributed import DaskFitter, DaskUnavailable, best_round, connect, parse_local
from intent.model import IntentModel, read_tags
from intent.train import DEFAULT_PARAMS, TrainResult, fit_here, is_better, train


@pytest.fixture(scope="module")
def scheduler() -> Iterator[str]:
    """Two single-thread workers in this process: two LightGBM machines, no process start-up."""
    with LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=False,
        protocol="tcp",  # an address another process could reach, as a real scheduler's
        host="127.0.0.1",
        dashboard_address=None,
    ) as cluster:
        yield cluster.scheduler_address


@pytest.fixture(scope="module")
def dask_trained(synthetic_dataset: Dataset, scheduler: str) -> TrainResult:
    with connect(scheduler) as client:
        return train(synthetic_dataset, seed=0, fitter=DaskFitter(client))


def test_the_cluster_model_is_as_good_as_the_one_trained_here(
    trained: TrainResult, dask_trained: TrainResult
) -> None:
    here, there = trained.metrics, dask_trained.metrics
    assert (here["fitted_on"], there["fitted_on"]) == ("this machine", "dask: 2 workers")
    assert (there["rows"], there["positives"]) == (here["rows"], here["positives"])
    assert here["auc"] >= 0.65 and there["auc"] >= 0.65
    assert abs(there["auc"] - here["auc"]) <= 0.01, (here["auc"], there["auc"])
    is_better(there, here)  # the publish rule accepts them as scored on one holdout


def test_the_cluster_model_is_an_ordinary_artifact(
    synthetic_dataset: Dataset, dask_trained: TrainResult
) -> None:
    best = dask_trained.best_iteration
    text = dask_trained.model_text
    assert read_tags(text)["features_version"] == synthetic_dataset.features_version
    assert f"Tree={best - 1}\n" in text and f"Tree={best}\n" not in text  # cut to its round
    assert dask_trained.metrics["rounds_run"] - best == 30  # the patience window
    model = IntentModel.from_text(text)
    scores = model.predict(synthetic_dataset.X[:100])
    assert np.all((scores > 0) & (scores < 1)) and len(set(scores.tolist())) > 1


def test_best_round_applies_lightgbms_early_stopping_rule(synthetic_dataset: Dataset) -> None:
    """A booster grown to 300 rounds, cut here, stops where lgb.early_stopping stopped."""
    fit, holdout = synthetic_dataset.split_by_time(0.2)
    p = {**DEFAULT_PARAMS, "num_threads": 1, "seed": 0}
    stopped = fit_here(fit, holdout, p, num_boost_round=300, early_stopping_rounds=30)
    full = lgb.train(p, lgb.Dataset(fit.X, fit.y, params=p), num_boost_round=300)
    assert full.current_iteration() == 300 > stopped.rounds_run
    assert best_round(full, holdout, 30) == (stopped.best_iteration, stopped.rounds_run)
    assert best_round(full, holdout, 1000) == (stopped.best_iteration, 300)  # never stops


@pytest.mark.parametrize(("spec", "workers"), [("local:3", 3), ("tcp://h:8786", None)])
def test_local_spec(spec: str, workers: int | None) -> None:
    assert parse_local(spec) == workers


@pytest.mark.parametrize("spec", ["local:0", "local:x", "local:-1"])
def test_a_bad_local_spec_is_refused(spec: str) -> None:
    with pytest.raises(DaskUnavailable, match=r"local:N"):
        parse_local(spec)


@pytest.mark.parametrize("spec", ["foo", "http://h:8786", "h:abc"])
def test_a_malformed_address_is_refused_before_dialling(spec: str) -> None:
    with pytest.raises(DaskUnavailable, match=r"tcp://host:port"), connect(spec, timeout_s=1):
        pass


def test_a_missing_extra_names_the_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "distributed", None)  # what an import finds uninstalled
    with (
        pytest.raises(DaskUnavailable, match=r"pip install 'refreshd\[distributed\]'"),
        connect("local:1"),
    ):
        pass


def test_an_unreachable_scheduler_fails_within_the_timeout() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, never listening: nothing answers there
        with (
            pytest.raises(DaskUnavailable, match=r"no Dask scheduler answered .* within 1 s"),
            connect(f"tcp://127.0.0.1:{port}", timeout_s=1),
        ):
            pass
