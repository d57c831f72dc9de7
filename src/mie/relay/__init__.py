"""The relay: the IAM drives a badge in a workstation's reader over a WebSocket (issue 9, item 6).

:mod:`mie.relay.iam` is the IAM side (:class:`~mie.relay.iam.RelaySessions` on any
:class:`~mie.relay.iam.RelaySocket`, served by :class:`~mie.relay.iam.RelayServer` or by
``mie serve``; :class:`~mie.relay.iam.RelayConnection`), :mod:`mie.relay.agent` the workstation side
(:class:`~mie.relay.agent.Agent`, run by ``mie agent``), :mod:`mie.relay.protocol` the wire
format and :mod:`mie.relay.policy` what the agent forwards. Both peers need the ``websockets``
package (``pip install 'mie[relay]'``); the names below load on first use, so importing
``mie.relay`` or its errors needs nothing more than :mod:`mie.core`.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from mie.relay.errors import (
    RelayClosedError,
    RelayProtocolError,
    RelayRefusedError,
    RelayTimeoutError,
)

if TYPE_CHECKING:
    from mie.relay.agent import Agent, AgentTimeouts
    from mie.relay.iam import (
        PendingSession,
        RelayConnection,
        RelayPin,
        RelayServer,
        RelaySessions,
        RelaySocket,
    )
    from mie.relay.protocol import session_id

_EXPORTS = {
    "Agent": "mie.relay.agent",
    "AgentTimeouts": "mie.relay.agent",
    "PendingSession": "mie.relay.iam",
    "RelayConnection": "mie.relay.iam",
    "RelayPin": "mie.relay.iam",
    "RelayServer": "mie.relay.iam",
    "RelaySessions": "mie.relay.iam",
    "RelaySocket": "mie.relay.iam",
    "session_id": "mie.relay.protocol",
}

__all__ = [
    "Agent",
    "AgentTimeouts",
    "PendingSession",
    "RelayClosedError",
    "RelayConnection",
    "RelayPin",
    "RelayProtocolError",
    "RelayRefusedError",
    "RelayServer",
    "RelaySessions",
    "RelaySocket",
    "RelayTimeoutError",
    "session_id",
]


def __getattr__(name: str) -> object:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'mie.relay' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
