"""The shapes other packages write against: `DailyReport` and `ReportFormat`.

A format plugin implements `ReportFormat` and receives a `DailyReport`; an
`on_report_generated` listener receives a `DailyReport` too.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from html import escape
from typing import Any, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field, field_validator

from plugins.reports.values import ensure_json_safe, flatten


@runtime_checkable
class ReportFormat(Protocol):
    """A way to write a DailyReport to a file, registered with `register_report_formats()`.

    `name` is what `formats=[…]` and `REPORTS_FORMATS` list, `extension` the file
    suffix (no dot), `media_type` the MIME type (for e-mail attachments, HTTP).
    """

    name: str
    extension: str
    media_type: str

    def render(self, report: DailyReport) -> bytes:
        """Return the whole file's content for `report`."""
        ...


class DailyReport(BaseModel):
    """One UTC day's report: JSON-safe sections by name, and the files written for it.

    Built-in sections: `transactions` (count, sums and counts by currency, kind
    and status, pending and failed counts) and `customers` (new users and
    accounts). Other plugins add theirs with `register_report_sections`.
    """

    model_config = ConfigDict(frozen=False)

    report_date: date
    generated_at: datetime
    sections: dict[str, dict[str, Any]] = Field(default_factory=dict)
    files: dict[str, str] = Field(default_factory=dict)

    @field_validator("generated_at")
    @classmethod
    def _aware_utc(cls, value: datetime) -> datetime:
        if value.tzinfo is None:
            raise ValueError("generated_at must be timezone-aware (UTC)")
        return value.astimezone(UTC)

    @field_validator("sections")
    @classmethod
    def _json_safe(cls, value: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        ensure_json_safe(value)
        return value

    @property
    def totals(self) -> dict[str, Any]:
        """`{"transactions": count, "sums": {currency: "12345.67"}}` of the day."""
        tx = self.sections.get("transactions") or {}
        by_currency = tx.get("by_currency") or {}
        return {
            "transactions": int(tx.get("count") or 0),
            "sums": {cur: row.get("sum", "0.00") for cur, row in by_currency.items()},
        }

    def summary_text(self) -> str:
        """A plain-text summary (what an admin e-mail's body says)."""
        lines = [
            f"Daily report for {self.report_date.isoformat()} (UTC day)",
            f"Generated at {self.generated_at.isoformat()}",
            "",
        ]
        tx = self.sections.get("transactions")
        if tx and "error" not in tx:
            lines.append(f"Transactions: {tx.get('count', 0)}")
            for cur, row in (tx.get("by_currency") or {}).items():
                lines.append(f"  {cur}: {row['count']} transactions, total {row['sum']}")
            lines.append(f"Pending: {tx.get('pending', 0)}, failed: {tx.get('failed', 0)}")
            for group in ("by_kind", "by_status"):
                label = group.removeprefix("by_")
                lines.append(f"By {label}:")
                for key, row in (tx.get(group) or {}).items():
                    sums = ", ".join(f"{c} {s}" for c, s in (row.get("sums") or {}).items())
                    lines.append(f"  {key}: {row['count']}" + (f" ({sums})" if sums else ""))
        customers = self.sections.get("customers")
        if customers and "error" not in customers:
            lines.append(
                f"New users: {customers.get('new_users', 0)}, "
                f"new accounts: {customers.get('new_accounts', 0)}"
            )
        others = [n for n in self.sections if n not in {"transactions", "customers"}]
        for name in others:
            lines.append("")
            lines.append(f"[{name}]")
            for key, value in flatten(self.sections[name]):
                lines.append(f"  {key}: {value}")
        if self.files:
            lines.append("")
            lines.append("Files:")
            for fmt, path in self.files.items():
                lines.append(f"  {fmt}: {path}")
        return "\n".join(lines) + "\n"

    def summary_html(self) -> str:
        """The plain-text summary as a small, escaped HTML fragment (for e-mail bodies)."""
        return f"<pre>{escape(self.summary_text())}</pre>"
