"""Fixtures for the unit tests: in-process only, no reader, no daemon, no network."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from mie.core.connection import Transport
from tests.unit.fakes import Script, ScriptedConnection, ScriptFactory


@pytest.fixture
def scripted() -> Iterator[ScriptFactory]:
    """Build scripted connections; every one must be fully consumed by the end of the test."""
    made: list[ScriptedConnection] = []

    def make(
        script: Script, atr: bytes | None = None, transport: Transport = Transport.CONTACT
    ) -> ScriptedConnection:
        connection = ScriptedConnection(script, atr, transport)
        made.append(connection)
        return connection

    yield make
    for connection in made:
        assert connection.remaining == 0, (
            f"{connection.remaining} scripted exchanges never sent "
            f"(next: {connection.script[connection.position][0].hex()})"
        )
