"""``mie audit verify``: exit 0 on an intact trail (file or a node's chain in the store), 1
naming the first bad record (edited, removed, reordered, a cut tail under ``--head``), 2 for bad
usage and a trail that cannot be read at all."""

from __future__ import annotations

import datetime as dt
import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from mie._cli.__main__ import run
from mie._cli.state import UsageError
from mie.audit import AuditEvent, AuditTrail, FileSink, StoreSink, record_digest

NODE = "node-a"
START = dt.datetime(2026, 12, 2, 10, 0, tzinfo=dt.UTC)
DEADLINE = 30.0


class _Clock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> dt.datetime:
        self.now += dt.timedelta(seconds=1)
        return self.now


def _event(k: int) -> AuditEvent:
    return AuditEvent(
        "verify",
        rp="https://iam.example",
        client="keycloak",
        identity={"id_nat": f"81010009987{k % 10}", "test": True},
        level="substantial",
        reasons=(f"reason {k}",),
    )


def make_trail(path: Path, count: int) -> list[bytes]:
    """Write ``count`` records to ``path`` through the library's file sink; :return: its
    lines."""
    with FileSink.open(path) as sink:
        trail = AuditTrail(NODE, [sink], clock=_Clock())
        for k in range(count):
            trail.append(_event(k))
    return path.read_bytes().splitlines(keepends=True)


def _verify(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = run(["audit", "verify", *args])
    out = capsys.readouterr()
    return code, out.out, out.err


def _one_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("mie: error: "), stderr
    return lines[0]


def test_an_intact_trail_passes_and_names_its_head(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "audit.jsonl"
    lines = make_trail(path, 5)
    head = record_digest(lines[-1][:-1].decode())
    code, out, err = _verify(capsys, str(path))
    assert (code, err) == (0, "")
    assert out == f"5 records, chain intact, head {head}\n"
    code, out, _ = _verify(capsys, str(path), "--head", head.upper(), "--json")
    assert code == 0
    assert json.loads(out) == {
        "valid": True,
        "records": 5,
        "head": head,
        "error": None,
        "first_bad": None,
    }


def test_an_empty_trail_has_no_head(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "audit.jsonl"
    path.write_bytes(b"")
    assert _verify(capsys, str(path)) == (0, "0 records, chain intact, head none\n", "")


def test_one_record_edited_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "audit.jsonl"
    lines = make_trail(path, 4)
    edited = lines[1].replace(b'"level":"substantial"', b'"level":"high"')
    assert edited != lines[1]
    path.write_bytes(b"".join([lines[0], edited, *lines[2:]]))
    code, out, err = _verify(capsys, str(path))
    assert (code, out) == (1, "")
    line = _one_line(err)
    # Record 2 is still a well-formed record: record 3's prev is what no longer matches.
    assert line.startswith(f"mie: error: integrity_error: audit trail {path}: record 3 (line 3): ")
    assert "prev" in line
    code, out, _ = _verify(capsys, str(path), "--json")
    assert code == 1
    report = json.loads(out)
    assert report["valid"] is False and report["error"]["code"] == "integrity_error"
    assert (report["first_bad"]["line"], report["first_bad"]["seq"]) == (3, 3)
    assert "prev" in report["first_bad"]["problem"]


def test_one_byte_changed_anywhere_in_a_record_fails(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "audit.jsonl"
    lines = make_trail(path, 3)
    middle = lines[1]
    for offset in range(0, len(middle) - 1, max(1, len(middle) // 25)):
        changed = bytearray(middle)
        changed[offset] ^= 0x01
        path.write_bytes(b"".join([lines[0], bytes(changed), lines[2]]))
        code, _, err = _verify(capsys, str(path))
        assert code == 1, offset
        assert ": record 2 (line 2): " in err or ": record 3 (line 3): " in err, (offset, err)


@pytest.mark.parametrize(
    ("surgery", "named"),
    [
        (lambda ls: [ls[0], *ls[2:]], "record 2 (line 2)"),  # removed
        (lambda ls: [ls[0], ls[2], ls[1], *ls[3:]], "record 2 (line 2)"),  # reordered
        (lambda ls: [ls[0], ls[1], ls[1], *ls[2:]], "record 3 (line 3)"),  # duplicated
        (lambda ls: [*ls[:-1], ls[-1][:-5]], "record 4 (line 4)"),  # torn last line
        (lambda ls: [ls[0].replace(b"\n", b"\r\n"), *ls[1:]], "record 1 (line 1)"),  # CRLF
    ],
)
def test_a_removed_reordered_duplicated_or_torn_record_is_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], surgery: object, named: str
) -> None:
    path = tmp_path / "audit.jsonl"
    lines = make_trail(path, 4)
    path.write_bytes(b"".join(surgery(lines)))  # type: ignore[operator]
    code, _, err = _verify(capsys, str(path))
    assert code == 1
    assert f": {named}: " in _one_line(err)


def test_a_cut_tail_passes_alone_and_fails_against_the_head(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "audit.jsonl"
    lines = make_trail(path, 4)
    head = record_digest(lines[-1][:-1].decode())
    path.write_bytes(b"".join(lines[:-1]))
    # The documented limit: the chain alone cannot see its end cut.
    assert _verify(capsys, str(path))[0] == 0
    code, _, err = _verify(capsys, str(path), "--head", head)
    assert code == 1
    assert "not the expected head" in _one_line(err)


def test_an_oversized_line_is_refused_without_reading_it_all(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "audit.jsonl"
    make_trail(path, 1)
    with path.open("ab") as f:
        f.write(b"x" * (1 << 20))
    code, _, err = _verify(capsys, str(path))
    assert code == 1
    assert ": record 2 (line 2): " in _one_line(err)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((), "Give the audit FILE or --store URL --node N"),
        (("a.jsonl", "--store", "sqlite:x.db", "--node", NODE), "one of them"),
        (("--store", "sqlite:x.db"), "--store needs --node"),
        (("a.jsonl", "--node", NODE), "--node goes with --store"),
        (("a.jsonl", "--head", "abc"), "--head"),
        (("--store", "sqlite:x.db", "--node", "a b"), "--node"),
        (("--store", "none", "--node", NODE), "--store none"),
    ],
)
def test_bad_usage_is_one_line_exit_2(
    args: tuple[str, ...], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = _verify(capsys, *args)
    assert code == 2
    assert message in _one_line(err)


def test_a_trail_that_cannot_be_read_is_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = _verify(capsys, str(tmp_path / "missing.jsonl"))
    assert code == 2 and "missing.jsonl" in _one_line(err)
    (tmp_path / "dir.jsonl").mkdir()
    code, _, err = _verify(capsys, str(tmp_path / "dir.jsonl"))
    assert code == 2 and "dir.jsonl" in _one_line(err)


def test_a_fifo_is_refused_not_waited_on(tmp_path: Path) -> None:
    fifo = tmp_path / "audit.fifo"
    os.mkfifo(fifo)
    out = subprocess.run(
        [sys.executable, "-m", "mie", "audit", "verify", str(fifo)],
        capture_output=True,
        text=True,
        timeout=DEADLINE,
        check=False,
    )
    assert out.returncode == 2
    assert "not a regular file" in _one_line(out.stderr)


# A node's chain in the store.


def _store_trail(url_path: Path, count: int) -> None:
    from mie.store.sqlite import SqliteStore

    with SqliteStore(url_path) as store:
        trail = AuditTrail(NODE, [StoreSink(store, NODE)], clock=_Clock())
        for k in range(count):
            trail.append(_event(k))


def test_a_node_chain_in_the_store_verifies_and_an_edit_is_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "state.db"
    _store_trail(db, 1205)  # more than one page of the store
    url = f"sqlite:{db}"
    code, out, err = _verify(capsys, "--store", url, "--node", NODE)
    assert (code, err) == (0, "")
    assert out.startswith("1205 records, chain intact, head ")
    # RS2: another node has no chain: it was '0 records, chain intact' (exit 0), a check that
    # passed on nothing (a mistyped node name, or a chain removed whole, verified).
    code, out, err = _verify(capsys, "--store", url, "--node", "node-b")
    assert (code, out) == (2, "")
    assert "no audit chain of node 'node-b'" in _one_line(err)
    with sqlite3.connect(db) as connection:
        (line,) = connection.execute(
            "SELECT line FROM mie_audit WHERE node = ? AND seq = 7", (NODE,)
        ).fetchone()
        connection.execute(
            "UPDATE mie_audit SET line = ? WHERE node = ? AND seq = 7",
            (line.replace('"level":"substantial"', '"level":"high"'), NODE),
        )
    connection.close()
    code, _, err = _verify(capsys, "--store", url, "--node", NODE)
    assert code == 1
    assert _one_line(err).startswith(
        f"mie: error: integrity_error: audit chain of node {NODE}: record 8 (line 8): "
    )


def test_a_store_that_cannot_be_read_is_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "not-a-db"
    bad.write_bytes(b"this is not a SQLite database" * 100)
    code, _, err = _verify(capsys, "--store", f"sqlite:{bad}", "--node", NODE)
    assert code == 2
    _one_line(err)


def test_a_store_file_that_is_not_there_is_exit_2_and_not_created(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # RS2: a mistyped path was opened as a new, empty SQLite store (the file created by a
    # reader) and passed: '0 records, chain intact, head none', exit 0.
    missing = tmp_path / "typo.db"
    code, out, err = _verify(capsys, "--store", f"sqlite:{missing}", "--node", NODE)
    assert (code, out) == (2, "")
    assert "no such file" in _one_line(err)
    assert list(tmp_path.iterdir()) == []


def test_an_unreadable_trail_or_a_read_error_is_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Issue 11's trial: an audit file the user may not read (EACCES; simulated: the tests may
    # run as root), then a read that fails midway (EIO): one line naming it, exit 2, no trace.
    path = tmp_path / "audit.jsonl"
    make_trail(path, 3)
    real_open = os.open

    def denied(file: Any, *args: Any, **kwargs: Any) -> int:
        if os.fspath(file) == str(path):
            raise PermissionError(13, "Permission denied", str(file))
        return real_open(file, *args, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(os, "open", denied)
        code, out, err = _verify(capsys, str(path))
    assert (code, out) == (2, "")
    assert _one_line(err) == f"mie: error: Audit trail {path}: Permission denied"

    import mie._cli.audit as cli_audit

    class _Broken:
        def readline(self, size: int) -> bytes:
            raise OSError(5, "Input/output error")

    lines = cli_audit.file_lines(_Broken(), str(path))  # type: ignore[arg-type]
    with pytest.raises(UsageError, match=r"^Audit trail .*: Input/output error$"):
        next(lines)
