"""The offline CLI: generate a log to files, train from them, write model and report."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from intent.cli import main
from intent.model import IntentModel


def test_generate_then_train(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        main(["generate", "--out", str(tmp_path), "--users", "60", "--days", "2", "--seed", "4"])
        == 0
    )
    decisions, events = tmp_path / "decisions.jsonl", tmp_path / "events.jsonl"
    assert decisions.exists() and events.exists()
    model, report = tmp_path / "model.txt", tmp_path / "report.json"
    argv = ["train", "--decisions", str(decisions), "--events", str(events),
            "--out", str(model), "--report", str(report)]  # fmt: skip
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "holdout: AUC" in out and "calibration" in out
    data = json.loads(report.read_text())
    assert sum(b["count"] for b in data["metrics"]["calibration"]) == data["metrics"]["rows"]
    IntentModel.from_text(model.read_text())


@pytest.mark.parametrize("argv", [["--help"], ["train", "--help"], ["generate", "--help"]])
def test_help_explains(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 0
    assert "usage:" in capsys.readouterr().out
