"""The sanctions plugin's tables: the list (`sanctions_entries`) and when it was loaded
(`sanctions_list_state`, one row)."""

from __future__ import annotations

from datetime import datetime

from core.db import Base, UTCDateTime
from sqlalchemy import Integer, String
from sqlalchemy.orm import Mapped, mapped_column

STATE_ID = 1  # sanctions_list_state has a single row


class SanctionsEntry(Base):
    """One sanctioned name, as listed and in its normalised form (what is matched)."""

    __tablename__ = "sanctions_entries"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    normalised: Mapped[str] = mapped_column(String(200), unique=True)
    program: Mapped[str | None] = mapped_column(String(100), nullable=True)


class SanctionsListState(Base):
    """When the list was last loaded, from where, and how many names it had."""

    __tablename__ = "sanctions_list_state"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    refreshed_at: Mapped[datetime] = mapped_column(UTCDateTime)
    source: Mapped[str] = mapped_column(String(500))
    entries: Mapped[int] = mapped_column(Integer)
