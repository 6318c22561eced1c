"""The reports plugin's table: one stored report per UTC day (`reports_daily`)."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import JSON, Date, Integer, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from core.db import Base, UTCDateTime, utcnow


class StoredReport(Base):
    """The latest report of one UTC day; re-running the day updates this row in place."""

    __tablename__ = "reports_daily"
    __table_args__ = (UniqueConstraint("report_date", name="uq_reports_daily_report_date"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    report_date: Mapped[date] = mapped_column(Date, nullable=False)
    generated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, nullable=False)
    sections: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False)
    files: Mapped[dict[str, str]] = mapped_column(JSON, nullable=False)
    totals: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False)
    runs: Mapped[int] = mapped_column(Integer, default=1, nullable=False)

    def __repr__(self) -> str:
        return f"<StoredReport {self.report_date} runs={self.runs}>"
