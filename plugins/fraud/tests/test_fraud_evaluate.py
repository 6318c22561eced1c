"""Measured quality (plugins/fraud/planting.py, evaluate.py): planting is deterministic, every
planted instance is found (recall 1.0), no near-miss fires, and the CLI plants and evaluates;
planting refuses a mapped database or one without seeded data."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner
from sqlalchemy import create_engine, select

from banktasks_testing import seed_data
from banktasks_testing.bankschema import BANK_MAPPING, create_bank_schema
from core.models import Transaction
from plugins.fraud import FraudAlert
from plugins.fraud.evaluate import evaluate
from plugins.fraud.planting import PLANTED_RULES, PlantingError, plant_typologies

SEED_NOW = datetime(2024, 6, 1, tzinfo=UTC)
K = 3


def seeded(make_app: Any, **overrides: Any) -> Any:
    """A fraud app on seeded background traffic (small: 60 users, 2,000 transactions)."""
    app = make_app("fraud", **overrides)
    seed_data(app.runtime.db, users=60, transactions=2000, seed_value=5, now=SEED_NOW)
    return app


def planted_rows(app: Any, after: int) -> list[tuple[Any, ...]]:
    """Every transaction with an id above `after`, as plain tuples."""
    t = Transaction
    query = select(
        t.id, t.account_id, t.amount, t.kind, t.status, t.channel, t.counterparty, t.created_at
    ).where(t.id > after)
    with app.runtime.db.session() as session:
        return [tuple(row) for row in session.execute(query.order_by(t.id))]


def check_quality(app: Any) -> dict[str, dict[str, Any]]:
    """Plant K of each, evaluate, and check recall 1.0 and silent near-misses for every rule."""
    truth = plant_typologies(app.runtime.db, K, seed=11)
    assert sorted({i["rule"] for i in truth.instances}) == sorted(PLANTED_RULES)
    result = {r["rule"]: r for r in evaluate(truth).as_dict()["rules"]}
    assert set(PLANTED_RULES) <= set(result)
    for rule in PLANTED_RULES:
        numbers = result[rule]
        assert (numbers["planted"], numbers["tp"], numbers["fn"]) == (K, K, 0), numbers["missed"]
        assert numbers["recall"] == 1.0
        assert numbers["near_miss_hits"] == 0, numbers["false_positives"]
        assert numbers["cross_hits"] == 0, numbers["false_positives"]
        assert 0 < numbers["precision"] <= 1.0
        assert numbers["fp"] == numbers["background_hits"]
    with app.runtime.db.session() as session:  # evaluating wrote nothing
        assert session.scalars(select(FraudAlert)).first() is None
    return result


def test_every_planted_instance_is_found_and_no_near_miss_fires(make_app):
    app = seeded(make_app)
    result = check_quality(app)
    # The seed's background holds no typology pattern but the seed's own planted large
    # amounts and structuring; nothing else, and no dormant account or fan burst at all.
    for rule in ("dormant_reactivation", "fan_in_out", "pass_through"):
        assert result[rule]["precision"] == 1.0
        assert result[rule]["background_per_1k_accounts"] == 0.0


def test_planting_is_deterministic(make_app, tmp_path: Path):
    truths, rows = [], []
    for name in ("one", "two"):
        app = seeded(make_app, database_url=f"sqlite:///{tmp_path / name}.db")
        truth = plant_typologies(app.runtime.db, 2, seed=9)
        truths.append(truth.as_dict())
        rows.append(planted_rows(app, truth.background["transactions"]))
    assert truths[0] == truths[1]
    assert rows[0] == rows[1] and len(rows[0]) == truths[0]["planted"]["transactions"]
    other = seeded(make_app, database_url=f"sqlite:///{tmp_path / 'three'}.db")
    assert plant_typologies(other.runtime.db, 2, seed=10).as_dict() != truths[0]
    near = {(n["rule"], n["variant"]) for n in truths[0]["near_misses"]}
    assert ("cash_threshold", "at_line") in near and ("fan_in_out", "case_variants") in near


def test_planting_refuses_an_empty_database_and_a_mapped_one(make_app, tmp_path: Path):
    app = make_app("fraud", database_url=f"sqlite:///{tmp_path / 'empty.db'}")
    with pytest.raises(PlantingError, match=r"holds no users.*banktasks db seed"):
        plant_typologies(app.runtime.db, 1)
    bank_url = f"sqlite:///{tmp_path / 'bank.db'}"
    bank = create_engine(bank_url)
    create_bank_schema(bank)
    bank.dispose()
    mapped = make_app(
        "fraud",
        data_mapping=BANK_MAPPING,
        data_database_url=bank_url,
        database_url=f"sqlite:///{tmp_path / 'own.db'}",
    )
    with pytest.raises(PlantingError, match=r"DATA_MAPPING is set.*never writes"):
        plant_typologies(mapped.runtime.db, 1)


@pytest.fixture
def banktasks(make_app: Any) -> Any:
    """`banktasks(*args)` runs the fraud plugin's commands in-process: (exit code, output),
    the output from its first line (the tests' log lines go to stdout before it; the
    command's own to stderr)."""
    app = seeded(make_app)
    group = click.Group("banktasks")
    app.runtime.hook.register_commands(cli=group)
    runner = CliRunner()

    def invoke(*args: str) -> tuple[int, str]:
        result = runner.invoke(group, list(args))
        output = result.output
        start = min(
            (output.find(m) for m in ("{\n", "rule ", "planted ") if m in output), default=0
        )
        return result.exit_code, output[start:]

    return invoke


def test_cli_plant_then_evaluate(banktasks, tmp_path: Path):
    truth = tmp_path / "truth.json"
    code, output = banktasks("fraud", "evaluate", "--truth", str(truth))
    assert code == 2 and "banktasks fraud plant" in output and str(truth) in output

    code, output = banktasks("fraud", "plant", "--per-typology", "1", "--truth", str(truth))
    assert code == 0, output
    assert "planted 8 instances" in output and str(truth) in output
    assert {i["rule"] for i in json.loads(truth.read_text())["instances"]} == set(PLANTED_RULES)

    code, output = banktasks("fraud", "evaluate", "--truth", str(truth))
    assert code == 0, output
    assert output.splitlines()[0].split()[:3] == ["rule", "planted", "found"]
    code, output = banktasks(
        "fraud", "evaluate", "--truth", str(truth), "--rule", "fan_in_out", "--json"
    )
    assert code == 0, output
    (numbers,) = json.loads(output)["rules"]
    assert (numbers["rule"], numbers["recall"], numbers["precision"]) == ("fan_in_out", 1.0, 1.0)


def test_cli_plant_json_writes_the_default_truth(banktasks, make_app):
    code, output = banktasks("fraud", "plant", "--per-typology", "1", "--seed", "3", "--json")
    assert code == 0, output
    summary = json.loads(output)
    assert summary["truth"].endswith("planted-typologies.json")
    assert summary["rules"]["velocity"] == {"instances": 1, "near_misses": 2}
    code, output = banktasks("fraud", "evaluate", "--json")
    assert code == 0, output
    recall = {r["rule"]: r["recall"] for r in json.loads(output)["rules"]}
    assert all(recall[rule] == 1.0 for rule in PLANTED_RULES)


@pytest.mark.postgres
def test_every_planted_instance_is_found_on_postgresql(make_app, pg_database_url):
    app = seeded(make_app, database_url=pg_database_url)
    assert app.runtime.db.dialect == "postgresql"
    check_quality(app)
