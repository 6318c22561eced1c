"""The shape of `DATA_MAPPING`: which of the bank's tables and columns hold users, accounts
and transactions, and how their amounts, times and values are stored.

Only the shape is checked here; `core.sources` checks the mapping against the database
(tables, columns, money types) when the app starts.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

FIELDS: dict[str, tuple[str, ...]] = {
    "users": ("id", "email", "full_name", "is_active", "created_at"),
    "accounts": ("id", "user_id", "number", "currency", "balance", "status", "created_at"),
    "transactions": (
        "id",
        "account_id",
        "amount",
        "currency",
        "kind",
        "status",
        "channel",
        "counterparty",
        "description",
        "created_at",
        "updated_at",
    ),
}
"""The fields banktasks reads, per model; a mapping may name a column for each."""

OPTIONAL: dict[str, tuple[str, ...]] = {
    "users": ("is_active", "created_at"),
    "accounts": ("currency", "status", "created_at", "balance"),
    "transactions": (
        "currency",
        "status",
        "channel",
        "counterparty",
        "description",
        "updated_at",
    ),
}
"""Fields that may be mapped to nothing (`""`): banktasks reads its default instead."""

TRANSLATED: dict[str, tuple[str, ...]] = {
    "accounts": ("status",),
    "transactions": ("kind", "status", "channel"),
}
"""Fields whose stored values may be translated to banktasks' values (`values`)."""

_NAME = r"^[A-Za-z_][A-Za-z0-9_$]*$"


class TableMapping(BaseModel):
    """One of the bank's tables behind a core model."""

    model_config = ConfigDict(extra="forbid")

    table: str = Field(pattern=_NAME, description="The table's name (without schema)")
    columns: dict[str, str | list[str]] = Field(
        default_factory=dict,
        description="field → column; a field left out reads the column of its own name; "
        '`""` maps an optional field to nothing; `full_name` may be a list of columns '
        "joined with spaces",
    )
    values: dict[str, dict[str, str]] = Field(
        default_factory=dict,
        description="field → {stored value: banktasks value}, for `kind`, `status` and "
        "`channel`; values not listed are read as they are",
    )


class DataMapping(BaseModel):
    """Where banktasks reads users, accounts and transactions in a bank's own schema."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    schema_: str | None = Field(
        None,
        alias="schema",
        pattern=_NAME,
        description="Schema of the bank's tables (PostgreSQL); unset: the connection's default",
    )
    amounts: Literal["decimal", "minor"] = Field(
        "decimal",
        description="`decimal`: amounts are NUMERIC in major units (12.34); `minor`: integer "
        "minor units (1234)",
    )
    times: Literal["datetime", "naive_utc", "epoch_micros"] = Field(
        "datetime",
        description="`datetime`: timestamps with time zone (PostgreSQL timestamptz; on SQLite "
        "UTC ISO text, as Django writes it); `naive_utc`: PostgreSQL timestamps without time "
        "zone holding UTC; `epoch_micros`: integer microseconds since the epoch",
    )
    users: TableMapping = Field(description="The table of customers")
    accounts: TableMapping = Field(description="The table of accounts")
    transactions: TableMapping = Field(description="The table of transactions")

    @field_validator("users", "accounts", "transactions")
    @classmethod
    def _known_fields(cls, mapping: TableMapping, info: object) -> TableMapping:
        model = getattr(info, "field_name", "")
        known = FIELDS[model]
        unknown = sorted(set(mapping.columns) - set(known))
        if unknown:
            raise ValueError(
                f"DATA_MAPPING.{model}.columns: unknown field(s) {', '.join(unknown)}; "
                f"fields: {', '.join(known)}"
            )
        for field, column in mapping.columns.items():
            if isinstance(column, list) and field != "full_name":
                raise ValueError(
                    f"DATA_MAPPING.{model}.columns.{field}: one column name expected "
                    "(only full_name may list several)"
                )
            if column == "" and field not in OPTIONAL[model]:
                raise ValueError(
                    f"DATA_MAPPING.{model}.columns.{field}: this field is required; name the "
                    "column that holds it"
                )
        untranslatable = sorted(set(mapping.values) - set(TRANSLATED.get(model, ())))
        if untranslatable:
            raise ValueError(
                f"DATA_MAPPING.{model}.values: cannot translate {', '.join(untranslatable)}; "
                f"translatable: {', '.join(TRANSLATED.get(model, ())) or '(none)'}"
            )
        return mapping

    def column(self, model: str, field: str) -> str | list[str]:
        """The column (or, for full_name, columns) behind one field; `""`: none."""
        mapping: TableMapping = getattr(self, model)
        return mapping.columns.get(field, field)
