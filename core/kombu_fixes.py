"""A fix for kombu's Redis transport that every banktasks app applies (any Redis broker)."""

from __future__ import annotations

from typing import Any

import redis


def closed_transport_is_a_connection_error() -> None:
    """Make kombu's Redis transport report a closed connection as a connection error.

    When the broker goes away, Celery's consumer first `collect()`s its connection
    (which detaches the transport: `transport.client = None`) and then `close()`s it.
    A channel that the first pass could not close (it was waiting on BRPOP) is closed
    in the second one; with messages still unacknowledged it tries to give them back
    through a new connection pool, and kombu (5.7) then fails with
    `AttributeError: 'NoneType' object has no attribute 'hostname'` — an error Celery
    does not expect there, so the worker stops ("Unrecoverable error") instead of
    reconnecting. The same happens to an acknowledgement sent on such a channel.
    Raising redis' ConnectionError instead lets kombu and Celery handle it as what it
    is: the messages stay in the broker's unacked set and come back after the
    visibility timeout, and the worker reconnects. Idempotent; applied on import of
    `core.factory`.
    """
    from kombu.transport import redis as kombu_redis

    original = kombu_redis.Channel._connparams
    if getattr(original, "_banktasks_patched", False):
        return

    def _connparams(self: Any, asynchronous: bool = False) -> Any:
        transport = self.connection
        if transport is None or transport.client is None:
            raise redis.ConnectionError("the broker connection was closed")
        return original(self, asynchronous=asynchronous)

    _connparams._banktasks_patched = True  # type: ignore[attr-defined]
    kombu_redis.Channel._connparams = _connparams  # type: ignore[method-assign]
