"""``mie audit verify``: check the hash chain of an audit trail.

A trail is the JSON-lines file ``mie serve --audit FILE`` writes, or the chain one node keeps in
the store (``--store URL --node N``). :func:`mie.audit.verify_trail` checks every record in
order and stops at the first bad one: not canonical JSON, a ``seq`` that does not follow (a
record removed or reordered), a ``prev`` that is not the SHA-256 of the record before (one
edited), a torn last line. The chain alone cannot see the *last* record edited or the tail cut:
``--head HASH`` (the head a ``stop`` record, ``GET /v1/health`` or an earlier run printed) is
that anchor; with ``--store`` the store's own head is.

Exit codes: 0 the chain is intact (``N records, chain intact, head H``); 1 a record is bad (the
one line names it); 2 bad usage, a file that cannot be read, a store that cannot be opened.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Iterator
from typing import IO, Any

import click

from mie._cli.options import open_store
from mie._cli.output import emit_json, json_option
from mie._cli.state import UsageError
from mie.core.errors import ErrorCode

MAX_LINE = 16 * 1024
"""The longest audit record (plan §4.1); a longer line is read no further than one byte past
it (the verifier then refuses it)."""
STORE_PAGE = 1000
"""Records read from the store per query."""
_HEAD = re.compile(r"[0-9a-f]{64}")
_NODE = re.compile(r"[A-Za-z0-9._:-]{1,64}")


@click.group("audit")
def audit_group() -> None:
    """Audit trails of `mie serve` (hash-chained JSON lines)."""


def parse_head(value: str | None) -> str | None:
    """:return: ``--head`` as 64 lower-case hex digits, or ``None``.

    :raises UsageError: anything else.
    """
    if value is None:
        return None
    head = value.strip().lower()
    if not _HEAD.fullmatch(head):
        raise UsageError("--head: the SHA-256 of the last record expected (64 hex digits)")
    return head


def _open_trail(file: str) -> IO[bytes]:
    """Open an audit file for reading: a regular file only (a FIFO would be waited on).

    :raises UsageError: it cannot be opened, or is not a regular file.
    """
    try:
        fd = os.open(file, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | os.O_CLOEXEC)
    except OSError as e:
        raise UsageError(f"Audit trail {file}: {e.strerror or e}") from e
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise UsageError(f"Audit trail {file}: not a regular file")
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def file_lines(handle: IO[bytes], file: str) -> Iterator[bytes]:
    """:return: the lines of ``handle``, each with its line end, none read past
    :data:`MAX_LINE` + 1 bytes.

    :raises UsageError: the file cannot be read.
    """
    while True:
        try:
            line = handle.readline(MAX_LINE + 2)
        except OSError as e:
            raise UsageError(f"Audit trail {file}: {e.strerror or e}") from e
        if not line:
            return
        yield line
        if len(line) > MAX_LINE + 1 and not line.endswith(b"\n"):
            return  # the verifier refuses it; the rest of that line is not read


def store_lines(store: Any, node: str, last: int) -> Iterator[bytes]:
    """:return: the node's records ``1..last`` from the store, as file lines."""
    seen = 0
    while seen < last:
        page = store.audit_lines(node, after=seen, limit=min(STORE_PAGE, last - seen))
        if not page:
            return
        for line in page:
            seen += 1
            yield line.encode("utf-8") + b"\n"
            if seen >= last:
                return


def _summary(report: Any) -> tuple[int, str | None]:
    return int(report.records), report.head


def _first_bad(error: Any) -> dict[str, Any]:
    return {
        "line": getattr(error, "line", None),
        "seq": getattr(error, "seq", None),
        "problem": getattr(error, "problem", None),
    }


@audit_group.command("verify")
@click.argument("file", required=False, type=click.Path(dir_okay=False))
@click.option(
    "--head",
    "head_hex",
    metavar="HASH",
    help="The SHA-256 (hex) the last record must have: catches a cut tail or an edited last "
    "record.",
)
@click.option(
    "--store",
    "store_url",
    metavar="URL",
    help="Check a node's chain in the store instead of a file (sqlite:PATH, postgresql://...).",
)
@click.option("--node", metavar="N", help="With --store: the node whose chain is checked.")
@json_option('Print {"valid", "records", "head", "error", "first_bad"} as JSON.')
def audit_verify(
    file: str | None,
    head_hex: str | None,
    store_url: str | None,
    node: str | None,
    as_json: bool,
) -> int:
    """Check the hash chain of the audit trail FILE (or of one node's chain in the store):
    exit 0 if every record follows the one before, 1 naming the first bad record."""
    from mie.audit import AuditChainError, verify_trail

    head = parse_head(head_hex)
    if (file is None) == (store_url is None):
        raise UsageError("Give the audit FILE or --store URL --node N (one of them)")
    if store_url is not None and node is None:
        raise UsageError("--store needs --node N (the node whose chain is checked)")
    if file is not None and node is not None:
        raise UsageError("--node goes with --store")
    try:
        if file is not None:
            where = f"audit trail {file}"
            with _open_trail(file) as handle:
                report = verify_trail(file_lines(handle, file), head=head)
        else:
            assert store_url is not None and node is not None  # noqa: S101 - checked above
            if not _NODE.fullmatch(node):
                raise UsageError("--node: 1 to 64 of A-Z a-z 0-9 . _ : -")
            where = f"audit chain of node {node}"
            report = _verify_store(store_url, node, head, verify_trail)
    except AuditChainError as e:
        message = f"{ErrorCode.INTEGRITY_ERROR.value}: {where}: {e}"
        if as_json:
            emit_json(
                {
                    "valid": False,
                    "records": None,
                    "head": None,
                    "error": {"code": ErrorCode.INTEGRITY_ERROR.value, "message": str(e)},
                    "first_bad": _first_bad(e),
                }
            )
        click.echo(f"mie: error: {' '.join(message.split())}", err=True)
        return 1
    records, last = _summary(report)
    if as_json:
        emit_json(
            {"valid": True, "records": records, "head": last, "error": None, "first_bad": None}
        )
    else:
        click.echo(f"{records} records, chain intact, head {last or 'none'}")
    return 0


def _verify_store(store_url: str, node: str, head: str | None, verify_trail: Any) -> Any:
    """Verify a node's chain as the store holds it, up to the head read first (records a
    running node appends meanwhile are not part of this check)."""
    from mie.store.errors import StoreError

    try:
        # Typed loosely: the audit methods of the store (issue 11, S2) are read by name.
        # A reader: a SQLite path that is not there is refused, not created empty.
        store: Any = open_store(store_url, must_exist=True)
        if store is None:
            raise UsageError("--store none holds no audit chain")
        with store:
            stored = store.audit_head(node)
            if stored is None:
                # Every node's chain starts with its start record: none is a wrong node name
                # (or a chain removed whole), never an intact chain.
                raise UsageError(f"The store holds no audit chain of node {node!r}")
            last, stored_head = stored
            # A --head given must be the end of the chain as stored; else the store's own head is.
            return verify_trail(store_lines(store, node, last), head=head or stored_head)
    except StoreError as e:
        # The chain could not be read at all: not a bad record (exit 1) but unreadable input.
        raise UsageError(f"Audit chain of node {node}: {e}") from e
