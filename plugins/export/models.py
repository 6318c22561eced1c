"""The `export_exports` table: one row per export file written."""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import BigInteger, Date, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from core.db import Base, UTCDateTime, utcnow


class ExportRecord(Base):
    """An export file: who, which range, which format, where, and its size and SHA-256.

    `idempotency_key` is unique: derived from the Celery task id, so a redelivered
    task finds its own row instead of writing a second file.
    """

    __tablename__ = "export_exports"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    idempotency_key: Mapped[str] = mapped_column(String(200), unique=True)
    # No foreign key: the users may be a bank's own table (DATA_MAPPING), even in another
    # database; the task checks that the user exists before it writes.
    user_id: Mapped[int] = mapped_column(Integer, index=True)
    format: Mapped[str] = mapped_column(String(32))
    start_date: Mapped[date] = mapped_column(Date)
    end_date: Mapped[date] = mapped_column(Date)
    path: Mapped[str] = mapped_column(String(1024))
    file_name: Mapped[str] = mapped_column(String(255))
    rows: Mapped[int] = mapped_column(Integer)
    bytes: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    ready_notified_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)

    def summary(self) -> dict[str, object]:
        """The JSON-safe task result for this export."""
        return {
            "export_id": self.id,
            "user_id": self.user_id,
            "format": self.format,
            "start_date": self.start_date.isoformat(),
            "end_date": self.end_date.isoformat(),
            "path": self.path,
            "file_name": self.file_name,
            "rows": self.rows,
            "bytes": self.bytes,
            "sha256": self.sha256,
        }

    def __repr__(self) -> str:
        return f"<ExportRecord {self.id} user={self.user_id} {self.format} rows={self.rows}>"
