"""`DELIVERY_*` settings: how often the reconciler sweeps and how long it waits."""

from __future__ import annotations

from pydantic import Field

from core import PluginSettings


class DeliverySettings(PluginSettings):
    """`DELIVERY_SWEEP_SECONDS`, `DELIVERY_GRACE_SECONDS`, `DELIVERY_MAX_RESENDS`,
    `DELIVERY_OUTBOX_GRACE_SECONDS`."""

    sweep_seconds: int = Field(
        30,
        ge=1,
        le=3600,
        description="How often beat sends the sweep (`delivery.sweep`): the outbox relay and "
        "the reconciler. A lost message is sent again on the second sweep that finds it "
        "nowhere, so recovery takes up to the grace period plus two sweeps",
    )
    grace_seconds: int = Field(
        60,
        ge=1,
        le=86400,
        description="Seconds after its (last) publish before the reconciler looks for a "
        "submission; younger ones are not checked",
    )
    max_resends: int = Field(
        5,
        ge=1,
        le=100,
        description="Times the reconciler sends one submission again before it gives up on "
        "it (logged as `delivery.given_up` and counted)",
    )
    outbox_grace_seconds: int = Field(
        10,
        ge=1,
        le=86400,
        description="Seconds a committed outbox row may wait for its own commit's publish "
        "before the relay sends it",
    )
