"""Measured quality: precision and recall of every rule against planted patterns
(`banktasks fraud evaluate`).

`evaluate(truth)` runs the rules over the truth's seed window through the back-test
(`plugins.fraud.backtest.run_backtest(..., compare=False)`: nothing is written, no
hook is called) and matches each rule's findings with what `plant_typologies` planted.

Matching. A finding of rule R matches a planted instance of R when the finding's
account is one of the instance's accounts (or, for a per-customer rule such as
cash_threshold, its evidence's `user_id` is the instance's user) AND the transactions
it names overlap the instance's: its `transaction_id`, or the ids in its evidence
(`transaction_ids`, `outbound_ids`, `inbound_id`, `first_transaction_id`).

- TP: planted instances of R matched by at least one finding of R;
- FN: planted instances of R that no finding matches;
- FP: findings of R that match no planted instance of R, of three kinds: on a
  near-miss planted for R (listed: they should not fire), on another planted pattern
  (a pattern of another rule, or another rule's near-miss, that also trips R), and
  on the background (the accounts that were there before planting);
- precision = TP / (TP + FP) (None without findings), recall = TP / (TP + FN);
- background rate: background FPs per 1,000 background accounts and per 100,000
  background transactions (the background's size as counted when planting).

A second finding matching an instance already matched (a burst found in both
directions, say) is neither a TP nor an FP: it is counted as `duplicates`.

The seed's own patterns. Entries with `"source": "db seed"` (the truth's `db_seed`
section, from `fraud plant --seed-summary`) are instances and near-misses like the
others, but on the background's accounts, which carry everyday traffic too: a finding
is on one of them only when the transactions it names overlap the entry's (on a
pattern planted by `fraud plant`, on accounts of its own, being on one of its accounts
is enough). An entry without transaction ids is matched on its accounts alone.
Without a `db_seed` section, the background still holds the seed's patterns, and the
table says so under it.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import click

from core import BanktasksError, current
from plugins.fraud.backtest import run_backtest
from plugins.fraud.cli_errors import BadInput
from plugins.fraud.planting import DB_SEED, PlantedTruth, default_truth_path, load_truth
from plugins.fraud.rules import collect_rules, unknown_rules

EVIDENCE_ID_LISTS = ("transaction_ids", "outbound_ids")
EVIDENCE_IDS = ("inbound_id", "first_transaction_id")
LISTED = 20
"""At most this many missed instances and false positives listed per rule."""
NO_SEED_SECTION = (
    "background includes db seed's own planted patterns: pass --seed-summary to `fraud plant`"
)


class EvaluationError(BanktasksError):
    """The truth to evaluate against is missing or unreadable."""


@dataclass
class RuleQuality:
    """One rule's numbers against the truth."""

    rule: str
    planted: int = 0
    found: int = 0
    tp: int = 0
    fn: int = 0
    fp: int = 0
    duplicates: int = 0
    near_miss_hits: int = 0
    cross_hits: int = 0
    background_hits: int = 0
    seconds: float = 0.0
    missed: list[dict[str, Any]] = field(default_factory=list)
    false_positives: list[dict[str, Any]] = field(default_factory=list)

    @property
    def precision(self) -> float | None:
        """TP / (TP + FP); None when the rule found nothing."""
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else None

    @property
    def recall(self) -> float | None:
        """TP / (TP + FN); None when nothing was planted for the rule."""
        return self.tp / self.planted if self.planted else None

    def as_dict(self, background: dict[str, int]) -> dict[str, Any]:
        """JSON-safe, with the background rates."""
        accounts, transactions = background.get("accounts", 0), background.get("transactions", 0)
        return {
            "rule": self.rule,
            "planted": self.planted,
            "findings": self.found,
            "tp": self.tp,
            "fn": self.fn,
            "fp": self.fp,
            "precision": _round(self.precision),
            "recall": _round(self.recall),
            "duplicates": self.duplicates,
            "near_miss_hits": self.near_miss_hits,
            "cross_hits": self.cross_hits,
            "background_hits": self.background_hits,
            "background_per_1k_accounts": _round(
                1000 * self.background_hits / accounts if accounts else None
            ),
            "background_per_100k_transactions": _round(
                100_000 * self.background_hits / transactions if transactions else None
            ),
            "seconds": round(self.seconds, 3),
            "missed": self.missed[:LISTED],
            "false_positives": self.false_positives[:LISTED],
        }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


@dataclass
class Evaluation:
    """Every rule's quality over one window, against one truth."""

    since: str
    until: str
    background: dict[str, int]
    rules: list[RuleQuality]
    db_seed: dict[str, Any] | None = None

    def as_dict(self) -> dict[str, Any]:
        """JSON-safe (`banktasks fraud evaluate --json`); `db_seed`: the truth's section on
        the seed's own patterns (None: they are counted as background)."""
        return {
            "since": self.since,
            "until": self.until,
            "background": self.background,
            "db_seed": self.db_seed,
            "rules": [r.as_dict(self.background) for r in self.rules],
        }

    def table(self) -> str:
        """The numbers as a plain-text table, one line per rule."""
        head = (
            f"{'rule':21} {'planted':>7} {'found':>6} {'TP':>4} {'FN':>4} {'FP':>5} "
            f"{'precision':>9} {'recall':>6} {'near-miss':>9} {'cross':>5} "
            f"{'backgr.':>7} {'/1k acc':>8} {'/100k tx':>8}"
        )
        lines = [head]
        for r in (q.as_dict(self.background) for q in self.rules):
            lines.append(
                f"{r['rule']:21} {r['planted']:>7} {r['findings']:>6} {r['tp']:>4} "
                f"{r['fn']:>4} {r['fp']:>5} {_num(r['precision']):>9} {_num(r['recall']):>6} "
                f"{r['near_miss_hits']:>9} {r['cross_hits']:>5} {r['background_hits']:>7} "
                f"{_num(r['background_per_1k_accounts'], 2):>8} "
                f"{_num(r['background_per_100k_transactions'], 2):>8}"
            )
        b = self.background
        lines.append(
            f"window {self.since} .. {self.until}; background: {b.get('accounts', 0)} accounts, "
            f"{b.get('transactions', 0)} transactions"
        )
        if self.db_seed is None:
            lines.append(NO_SEED_SECTION)
        return "\n".join(lines)


def _num(value: float | None, places: int = 3) -> str:
    return "-" if value is None else f"{value:.{places}f}"


def _ids(row: dict[str, Any]) -> set[int]:
    """The transaction ids a finding names: its own and those of its evidence."""
    ids = {row["transaction_id"]} if row.get("transaction_id") is not None else set()
    evidence = row.get("evidence") or {}
    for key in EVIDENCE_ID_LISTS:
        ids.update(int(i) for i in evidence.get(key) or () if isinstance(i, int))
    for key in EVIDENCE_IDS:
        if isinstance(evidence.get(key), int):
            ids.add(evidence[key])
    return ids


@dataclass(eq=False)  # one per entry: compared by identity
class _Pattern:
    entry: dict[str, Any]
    accounts: set[int]
    ids: set[int]

    @property
    def seeded(self) -> bool:
        """Planted by `db seed`, on accounts with other traffic."""
        return self.entry.get("source") == DB_SEED

    def matches(self, row: dict[str, Any], ids: set[int]) -> bool:
        """The finding `row` (naming `ids`) is this instance: on its accounts or customer,
        naming one of its transactions (any, when it lists none)."""
        on_it = row["account_id"] in self.accounts or (
            (row.get("evidence") or {}).get("user_id") == self.entry["user_id"]
        )
        return on_it and (not self.ids or bool(ids & self.ids))

    def brief(self) -> dict[str, Any]:
        keys = ("id", "rule", "variant", "user_id", "account_ids", "window")
        return {key: self.entry.get(key) for key in keys} | {
            "source": self.entry.get("source", "planted")
        }


def _patterns(entries: Iterable[dict[str, Any]]) -> list[_Pattern]:
    return [_Pattern(e, set(e["account_ids"]), set(e["transaction_ids"])) for e in entries]


def _by_account(patterns: list[_Pattern]) -> dict[int, list[_Pattern]]:
    index: dict[int, list[_Pattern]] = defaultdict(list)
    for pattern in patterns:
        for account in pattern.accounts:
            index[account].append(pattern)
    return index


@dataclass
class _Touching:
    """Which patterns a finding is on: a pattern planted here when the finding is on one
    of its accounts, one of db seed's when it names one of its transactions."""

    by_account: dict[int, list[_Pattern]]
    by_transaction: dict[int, list[_Pattern]]

    @classmethod
    def of(cls, patterns: list[_Pattern]) -> _Touching:
        by_transaction: dict[int, list[_Pattern]] = defaultdict(list)
        for pattern in patterns:
            if pattern.seeded and pattern.ids:
                for tid in pattern.ids:
                    by_transaction[tid].append(pattern)
        on_accounts = [p for p in patterns if not (p.seeded and p.ids)]
        return cls(_by_account(on_accounts), by_transaction)

    def __call__(self, row: dict[str, Any], ids: set[int]) -> list[_Pattern]:
        found = list(self.by_account.get(row["account_id"], []))
        for tid in sorted(ids):
            found += [p for p in self.by_transaction.get(tid, []) if p not in found]
        return found


def _as_truth(truth: PlantedTruth | dict[str, Any] | str | Path | None) -> PlantedTruth:
    if isinstance(truth, PlantedTruth):
        return truth
    if isinstance(truth, dict):
        return PlantedTruth.from_dict(truth)
    path = Path(truth) if truth is not None else default_truth_path()
    try:
        return load_truth(path)
    except FileNotFoundError:
        raise EvaluationError(
            f"no planted truth at {path}: run `banktasks fraud plant --per-typology 10` on "
            "seeded data first (or give its file with --truth)"
        ) from None
    except (ValueError, TypeError, KeyError) as exc:
        raise EvaluationError(
            f"the planted truth at {path} is not a truth file ({exc}): plant again with "
            "`banktasks fraud plant`"
        ) from None


def _score(
    quality: RuleQuality,
    rows: list[dict[str, Any]],
    own: list[_Pattern],
    own_near: _Touching,
    planted: _Touching,
) -> None:
    """Match one rule's findings (alert rows) with its planted instances."""
    by_account = _by_account(own)
    by_user: dict[int, list[_Pattern]] = defaultdict(list)
    for pattern in own:
        by_user[pattern.entry["user_id"]].append(pattern)
    matched: set[str] = set()
    for row in rows:
        ids = _ids(row)
        user = (row.get("evidence") or {}).get("user_id")
        candidates = by_account.get(row["account_id"], []) + by_user.get(user, [])
        hit = [p for p in candidates if p.matches(row, ids)]
        if hit:
            fresh = [p for p in hit if p.entry["id"] not in matched]
            if fresh:
                matched.update(p.entry["id"] for p in fresh)
            else:
                quality.duplicates += 1
            continue
        quality.fp += 1
        near = own_near(row, ids)
        other = planted(row, ids)
        where = "near_miss" if near else "planted" if other else "background"
        if near:
            quality.near_miss_hits += 1
        elif other:
            quality.cross_hits += 1
        else:
            quality.background_hits += 1
        on = (near or other or [None])[0]
        quality.false_positives.append(
            {
                "kind": where,
                "dedup_key": row["dedup_key"],
                "account_id": row["account_id"],
                "transaction_id": row.get("transaction_id"),
                "pattern": on.brief() if on is not None else None,
            }
        )
    quality.tp = len(matched)
    quality.fn = quality.planted - quality.tp
    quality.missed = [p.brief() for p in own if p.entry["id"] not in matched]


def evaluate(
    truth: PlantedTruth | dict[str, Any] | str | Path | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    rules: list[str] | None = None,
) -> Evaluation:
    """Precision and recall of every registered rule (or of `rules`) against `truth`.

    `truth`: a PlantedTruth, its dict, or the path of its JSON (None: the default file in
    BANKTASKS_VAR_DIR). The rules run over `[since, until)`, by default the truth's seed
    window, with the app's settings, through the back-test (nothing written, no hook
    called). Off-by-default rules (the typologies) run too. EvaluationError when the
    truth is missing or a rule name is unknown.
    """
    registered = sorted({rule.name for rule in collect_rules(current().plugins)})
    problem = unknown_rules(rules or (), registered)
    if problem:
        raise EvaluationError(problem)
    planted = _as_truth(truth)
    start = since or datetime.fromisoformat(planted.since)
    end = until or datetime.fromisoformat(planted.until)
    names = rules or registered
    report = run_backtest(names, start, end, compare=False)
    instances = _patterns(planted.instances)
    near_misses = _patterns(planted.near_misses)
    every = _Touching.of(instances + near_misses)
    results = []
    for result in report.rules:
        own = [p for p in instances if p.entry["rule"] == result.name]
        own_near = _Touching.of([p for p in near_misses if p.entry["rule"] == result.name])
        quality = RuleQuality(result.name, planted=len(own), found=len(result.rows))
        quality.seconds = result.seconds
        _score(quality, result.rows, own, own_near, every)
        results.append(quality)
    return Evaluation(
        report.since.isoformat(),
        report.until.isoformat(),
        planted.background,
        results,
        planted.db_seed,
    )


# -- the commands --------------------------------------------------------------------------


@click.command("evaluate")
@click.option(
    "--truth",
    "truth_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="The truth `banktasks fraud plant` wrote (default: in BANKTASKS_VAR_DIR).",
)
@click.option(
    "--rule",
    "rules",
    multiple=True,
    help="Only this rule (repeat for more); default: every registered rule.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the numbers as JSON.")
def evaluate_command(truth_path: Path | None, rules: tuple[str, ...], as_json: bool) -> None:
    """Precision and recall of every rule against the planted truth (writes nothing)."""
    try:
        result = evaluate(truth_path, rules=list(rules) or None)
    except EvaluationError as exc:
        raise BadInput(str(exc)) from None
    except BanktasksError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(json.dumps(result.as_dict(), indent=2) if as_json else result.table())
