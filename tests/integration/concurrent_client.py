"""A PC/SC client that loops on one reader: run as its own process by the concurrency tests.

``python -m tests.integration.concurrent_client MODE COUNT READER`` opens a new connection per
iteration (as a new ``mie info`` / ``mie auth`` would) and prints one JSON line:
``{"done": COUNT, "failures": ["<iteration>: <type>: <message>", ...]}``.
MODE is ``info`` (identify, no PIN) or ``auth`` (PIN 1234, signature, card reset at the end).
"""

from __future__ import annotations

import json
import sys

from mie.auth import CpxAuthenticator
from mie.errors import MieError
from mie.request import AuthRequest, StaticPin
from mie.transport.pcsc import PcscConnection
from mie.verification import login


def run(mode: str, count: int, reader: str) -> list[str]:
    """Loop ``count`` times; return the failures."""
    failures = []
    for i in range(count):
        try:
            with PcscConnection(reader) as connection:
                card = CpxAuthenticator(connection, chain_checked=False)
                if mode == "auth":
                    login(card, AuthRequest.new(), user=StaticPin("1234"), verifier=None)
                else:
                    card.identify()
        except MieError as e:
            failures.append(f"{i}: {type(e).__name__}: {e}")
    return failures


if __name__ == "__main__":
    mode, count, reader = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    print(json.dumps({"done": count, "failures": run(mode, count, reader)}))
