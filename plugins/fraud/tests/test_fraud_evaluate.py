"""Measured quality (plugins/fraud/planting.py, evaluate.py): planting is deterministic, every
planted instance is found (recall 1.0), no near-miss fires, and the CLI plants and evaluates;
planting refuses a mapped database or one without seeded data. With db seed's summary, the
seed's own patterns are in the truth: no background hit left, hits of other rules on them
are cross hits."""

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
from plugins.fraud.evaluate import NO_SEED_SECTION, evaluate
from plugins.fraud.planting import (
    DB_SEED,
    PLANTED_RULES,
    PlantedTruth,
    PlantingError,
    plant_typologies,
)

SEED_NOW = datetime(2024, 6, 1, tzinfo=UTC)
K = 3


def seeded(make_app: Any, **overrides: Any) -> Any:
    """A fraud app on seeded background traffic (small: 60 users, 2,000 transactions)."""
    return seeded_with_summary(make_app, **overrides)[0]


def seeded_with_summary(make_app: Any, **overrides: Any) -> tuple[Any, dict[str, Any]]:
    """`seeded`, and the seed's full summary (what `banktasks db seed --json` prints)."""
    app = make_app("fraud", **overrides)
    summary = seed_data(app.runtime.db, users=60, transactions=2000, seed_value=5, now=SEED_NOW)
    return app, summary.as_dict(full=True)


def planted_rows(app: Any, after: int) -> list[tuple[Any, ...]]:
    """Every transaction with an id above `after`, as plain tuples."""
    t = Transaction
    query = select(
        t.id, t.account_id, t.amount, t.kind, t.status, t.channel, t.counterparty, t.created_at
    ).where(t.id > after)
    with app.runtime.db.session() as session:
        return [tuple(row) for row in session.execute(query.order_by(t.id))]


SEEDS_OWN = {  # rule: the SeedSummary list whose entries are its instances
    "large_transaction": "large_transactions",
    "structuring": "structuring_accounts",
    "velocity": "velocity_accounts",
}


def check_quality(
    app: Any, summary: dict[str, Any] | None = None
) -> tuple[PlantedTruth, dict[str, dict[str, Any]]]:
    """Plant K of each (and with the seed's `summary`, its own patterns), evaluate, and check
    recall 1.0 and silent near-misses for every rule; with the summary, no background hit."""
    truth = plant_typologies(app.runtime.db, K, seed=11, seed_summary=summary)
    assert sorted({i["rule"] for i in truth.instances}) == sorted(PLANTED_RULES)
    evaluation = evaluate(truth)
    assert (evaluation.table().splitlines()[-1] == NO_SEED_SECTION) is (summary is None)
    result = {r["rule"]: r for r in evaluation.as_dict()["rules"]}
    assert set(PLANTED_RULES) <= set(result)
    for rule in PLANTED_RULES:
        numbers = result[rule]
        planted = K + (len(summary[SEEDS_OWN[rule]]) if summary and rule in SEEDS_OWN else 0)
        assert (numbers["planted"], numbers["tp"], numbers["fn"]) == (planted, planted, 0), numbers[
            "missed"
        ]
        assert numbers["recall"] == 1.0
        assert numbers["near_miss_hits"] == 0, numbers["false_positives"]
        assert 0 < numbers["precision"] <= 1.0
        if summary is None:
            assert numbers["cross_hits"] == 0, numbers["false_positives"]
            assert numbers["fp"] == numbers["background_hits"]
        else:  # what hits the background is the seed's own patterns
            assert numbers["background_hits"] == 0, numbers["false_positives"]
            assert numbers["fp"] == numbers["cross_hits"]
    with app.runtime.db.session() as session:  # evaluating wrote nothing
        assert session.scalars(select(FraudAlert)).first() is None
    return truth, result


def test_every_planted_instance_is_found_and_no_near_miss_fires(make_app):
    app = seeded(make_app)
    _, result = check_quality(app)
    # The seed's background holds no typology pattern but the seed's own planted large
    # amounts and structuring; nothing else, and no dormant account or fan burst at all.
    for rule in ("dormant_reactivation", "fan_in_out", "pass_through"):
        assert result[rule]["precision"] == 1.0
        assert result[rule]["background_per_1k_accounts"] == 0.0


def test_the_seeds_own_patterns_join_the_truth(make_app):
    app, summary = seeded_with_summary(make_app)
    truth, result = check_quality(app, summary)
    assert truth.db_seed is not None and truth.db_seed["since"] == summary["since"]
    seeds = [e for e in truth.instances + truth.near_misses if e["source"] == DB_SEED]
    near = [e for e in truth.near_misses if e["source"] == DB_SEED]
    assert sorted(t for e in near for t in e["transaction_ids"]) == summary["near_threshold"]
    assert all(e["transaction_ids"] and e["user_id"] for e in seeds)
    assert truth.summary()["rules"]["large_transaction"] == {"instances": K, "near_misses": K}

    for rule in SEEDS_OWN:
        assert (result[rule]["fp"], result[rule]["precision"]) == (0, 1.0), result[rule]
    # The seed's large transfers stand far above their accounts' usual amounts: hits of
    # amount_deviation on them are cross hits, on patterns db seed planted.
    deviation = result["amount_deviation"]
    assert deviation["cross_hits"] == deviation["fp"] > 0
    kinds = {(f["kind"], f["pattern"]["source"]) for f in deviation["false_positives"]}
    assert kinds == {("planted", DB_SEED)}


def test_a_seed_summary_of_another_database_or_without_ids_is_refused(make_app):
    app, summary = seeded_with_summary(make_app)
    counts = {**summary, "large_transactions": len(summary["large_transactions"])}
    with pytest.raises(PlantingError, match=r"'large_transactions' is int.*db seed --json"):
        plant_typologies(app.runtime.db, 1, seed_summary=counts)
    elsewhere = {**summary, "large_transactions": [10**9]}
    with pytest.raises(PlantingError, match=r"names transactions \[1000000000\].*does not hold"):
        plant_typologies(app.runtime.db, 1, seed_summary=elsewhere)


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
def seed_app(make_app: Any) -> tuple[Any, dict[str, Any]]:
    """The seeded app the commands run in, and its seed's summary."""
    return seeded_with_summary(make_app)


@pytest.fixture
def banktasks(seed_app: tuple[Any, dict[str, Any]]) -> Any:
    """`banktasks(*args, stdin=None)` runs the fraud plugin's commands in-process: (exit
    code, output), the output from its first line (the tests' log lines go to stdout
    before it; the command's own to stderr)."""
    app = seed_app[0]
    group = click.Group("banktasks")
    app.runtime.hook.register_commands(cli=group)
    runner = CliRunner()

    def invoke(*args: str, stdin: str | None = None) -> tuple[int, str]:
        result = runner.invoke(group, list(args), input=stdin)
        # stdout only when it worked: stderr may hold log lines (and, after other tests
        # closed a stream a logging handler kept, logging's own error reports)
        output = result.stdout if result.exit_code == 0 else result.output
        start = min(
            (output.find(m) for m in ("{\n", "rule ", "planted ") if m in output), default=0
        )
        return result.exit_code, output[start:]

    return invoke


def test_cli_plant_then_evaluate(banktasks, tmp_path: Path):
    truth = tmp_path / "truth.json"
    code, output = banktasks("fraud", "evaluate", "--truth", str(truth))
    assert code == 2 and "banktasks fraud plant" in output and str(truth) in output
    code, output = banktasks("fraud", "evaluate", "--rule", "nosuch")
    assert code == 2 and "unknown fraud rule(s) nosuch; rules that exist: " in output
    assert "backtest_fraud_rules" not in output

    code, output = banktasks("fraud", "plant", "--per-typology", "1", "--truth", str(truth))
    assert code == 0, output
    assert "planted 8 instances" in output and str(truth) in output
    assert {i["rule"] for i in json.loads(truth.read_text())["instances"]} == set(PLANTED_RULES)

    code, output = banktasks("fraud", "evaluate", "--truth", str(truth))
    assert code == 0, output
    assert output.splitlines()[0].split()[:3] == ["rule", "planted", "found"]
    assert output.splitlines()[-1] == NO_SEED_SECTION
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
    app, summary = seeded_with_summary(make_app, database_url=pg_database_url)
    assert app.runtime.db.dialect == "postgresql"
    check_quality(app, summary)


def test_cli_plant_with_the_seed_summary(banktasks, seed_app, tmp_path: Path):
    summary = seed_app[1]
    seed_json = tmp_path / "s.json"
    seed_json.write_text(json.dumps({**summary, "seconds": 0.1}))  # as `db seed --json`
    truth = tmp_path / "truth.json"
    args = ("fraud", "plant", "--per-typology", "1", "--truth", str(truth))
    code, output = banktasks(*args, "--seed-summary", str(seed_json))
    assert code == 0, output
    assert "planted 8 instances" in output and "db seed's own patterns" in output
    large = len(summary["large_transactions"])
    assert f"large_transaction      {large:>3} instances" in output
    sources = {e["source"] for e in json.loads(truth.read_text())["instances"]}
    assert sources == {"planted", DB_SEED}

    code, output = banktasks("fraud", "evaluate", "--truth", str(truth), "--json")
    assert code == 0, output
    numbers = {r["rule"]: r for r in json.loads(output)["rules"]}
    assert numbers["large_transaction"]["planted"] == 1 + large
    assert all(numbers[rule]["background_hits"] == 0 for rule in SEEDS_OWN)

    # `banktasks db seed --json | banktasks fraud plant --seed-summary -`: from stdin, after
    # whatever was logged before it; nothing there is a usage error naming stdin.
    piped = f"a log line\n{json.dumps(summary)}\n"
    code, output = banktasks(*args, "--seed-summary", "-", stdin=piped)
    assert code == 0 and "db seed's own patterns" in output, output
    code, output = banktasks(*args, "--seed-summary", "-", stdin="seeded 60 users\n")
    assert code == 2 and "--seed-summary <stdin>: no JSON object" in output, output
