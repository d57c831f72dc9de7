"""``mie serve``: the options, the refusals (one line, exit 2, before anything listens), the
listening line once bound, SIGTERM -> exit 0, Ctrl-C -> 130, and the CLI without the service
extra. The live tests run the real command in a process on 127.0.0.1, port 0."""

from __future__ import annotations

import asyncio
import json
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator, MutableMapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from mie._cli.__main__ import run
from tests.harness import require_module

_SERVICE = "the service extra: pip install 'mie[service]'"
require_module("starlette", _SERVICE)
require_module("uvicorn", _SERVICE)

ORIGIN = "https://iam.example"
DEADLINE = 30.0
LISTENING = "mie serve: node "


def _mie(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mie", *args],
        capture_output=True,
        text=True,
        timeout=DEADLINE,
        check=False,
        env=env,
    )


def _one_error_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("mie: error: "), stderr
    assert "Traceback" not in stderr
    return lines[0]


@dataclass
class Served:
    """A running ``mie serve``: its process, base URL and the stderr lines read so far."""

    process: subprocess.Popen[str]
    url: str
    stderr: list[str]

    def rest_of_stderr(self) -> str:
        assert self.process.stderr is not None
        return "".join(self.stderr) + self.process.stderr.read()


def _read_until_listening(process: subprocess.Popen[str]) -> tuple[str, list[str]]:
    """Read stderr lines (on a thread: a select on a buffered pipe misses lines already read)
    until the listening line; :return: its URL and the lines read."""
    assert process.stderr is not None
    lines: queue.Queue[str] = queue.Queue()
    stream = process.stderr

    def pump() -> None:
        for line in iter(stream.readline, ""):
            lines.put(line)
            if line.startswith(LISTENING):
                return
        lines.put("")

    threading.Thread(target=pump, daemon=True).start()
    seen: list[str] = []
    end = time.monotonic() + DEADLINE
    while time.monotonic() < end:
        try:
            line = lines.get(timeout=0.2)
        except queue.Empty:
            continue
        if not line:
            break
        seen.append(line)
        if line.startswith(LISTENING):
            return line.rsplit(" ", 1)[1].strip(), seen
    process.kill()
    raise AssertionError(f"no listening line: {''.join(seen)}")


@contextmanager
def served(*args: str) -> Iterator[Served]:
    """Run ``mie serve ARGS --port 0`` until the block ends (then SIGKILL if still running)."""
    process = subprocess.Popen(
        [sys.executable, "-m", "mie", "serve", "--port", "0", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        url, seen = _read_until_listening(process)
        yield Served(process, url, seen)
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=DEADLINE)


def _get(url: str) -> tuple[int, dict[str, object]]:
    try:
        with urllib.request.urlopen(url, timeout=DEADLINE) as answer:  # noqa: S310 - 127.0.0.1
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


# Without the service extra, the CLI works and mie serve says what to install.


def test_the_cli_does_not_import_the_service() -> None:
    code = (
        "import sys, mie._cli.app\n"
        "loaded = {'mie.service', 'starlette', 'uvicorn', 'prometheus_client'} & set(sys.modules)\n"
        "assert not loaded, loaded\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=DEADLINE, check=False
    )
    assert out.returncode == 0, out.stderr


def test_without_the_service_extra_it_says_what_to_install() -> None:
    # starlette and uvicorn made unimportable, as on an install without mie[service].
    code = (
        "import sys\n"
        "sys.modules['starlette'] = sys.modules['uvicorn'] = None\n"
        "from mie._cli.__main__ import run\n"
        f"sys.exit(run(['serve', '--origin', {ORIGIN!r}, '--port', '0']))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=DEADLINE, check=False
    )
    assert out.returncode == 2, out.stderr
    line = _one_error_line(out.stderr)
    assert "mie[service]" in line and "pip install" in line


# Refusals: one line, exit 2, nothing listening.


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((), "needs --origin"),
        (("--origin", "https://iam.example/path"), "Origin"),
        (("--origin", "not a url"), "Origin"),
        (("--origin", ORIGIN, "--host", "0.0.0.0"), "not loopback"),  # noqa: S104 - refused
        (("--origin", ORIGIN, "--tls-cert", "cert.pem"), "--tls-cert and --tls-key go together"),
        (("--origin", ORIGIN, "--store", "none"), "--store none"),
        (("--origin", ORIGIN, "--store", "mysql://x"), "--store"),
        (("--origin", ORIGIN, "--node", "a b"), "Node"),
        (("--origin", ORIGIN, "--port", "70000"), "--port"),
    ],
)
def test_a_refused_option_is_one_line_exit_2(
    args: tuple[str, ...], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(["serve", "--port", "0", *args]) == 2
    line = _one_error_line(capsys.readouterr().err)
    assert message in line


def test_a_bad_configuration_file_is_one_line_naming_the_member(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "service.json"
    config.write_text(json.dumps({"format": "mie-service/1", "origin": ORIGIN, "orgin": "x"}))
    assert run(["serve", "--config", str(config), "--port", "0"]) == 2
    assert "orgin" in _one_error_line(capsys.readouterr().err)
    config.write_text('{"format": "mie-service/1", "origin": "https://a.example", "origin": "b"}')
    assert run(["serve", "--config", str(config), "--port", "0"]) == 2
    _one_error_line(capsys.readouterr().err)
    assert run(["serve", "--config", str(tmp_path / "missing.json"), "--port", "0"]) == 2
    assert "missing.json" in _one_error_line(capsys.readouterr().err)


def test_a_port_in_use_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        store = f"sqlite:{tmp_path / 'state.db'}"
        code = run(["serve", "--origin", ORIGIN, "--port", str(port), "--store", store])
    assert code == 2
    assert f"Cannot listen on 127.0.0.1:{port}" in _one_error_line(capsys.readouterr().err)


# The running service.


def test_it_serves_once_bound_and_sigterm_exits_0(tmp_path: Path) -> None:
    audit = tmp_path / "audit.jsonl"
    store = f"sqlite:{tmp_path / 'state.db'}"
    args = ("--origin", ORIGIN, "--store", store, "--audit", str(audit), "--node", "node-a")
    with served(*args) as service:
        assert service.url.startswith("http://127.0.0.1:")
        assert service.stderr[-1] == f"mie serve: node node-a listening on {service.url}\n"
        status, health = _get(service.url + "/v1/health")
        assert status == 200 and health["status"] == "ok" and health["node"] == "node-a"
        service.process.send_signal(signal.SIGTERM)
        assert service.process.wait(timeout=DEADLINE) == 0
        stderr = service.rest_of_stderr()
    assert stderr.count(LISTENING) == 1, stderr
    assert "Traceback" not in stderr
    # The trail it left (its start and stop records) verifies.
    verified = _mie("audit", "verify", str(audit))
    assert verified.returncode == 0, verified.stderr
    assert ", chain intact, head " in verified.stdout


def test_the_node_name_defaults_to_the_host_and_the_port_bound(tmp_path: Path) -> None:
    with served("--origin", ORIGIN, "--store", f"sqlite:{tmp_path / 'state.db'}") as service:
        port = service.url.rsplit(":", 1)[1]
        status, health = _get(service.url + "/v1/health")
        assert status == 200
        assert str(health["node"]).endswith(f":{port}")
        service.process.send_signal(signal.SIGTERM)
        assert service.process.wait(timeout=DEADLINE) == 0


def test_ctrl_c_exits_130(tmp_path: Path) -> None:
    with served("--origin", ORIGIN, "--store", f"sqlite:{tmp_path / 'state.db'}") as service:
        service.process.send_signal(signal.SIGINT)
        assert service.process.wait(timeout=DEADLINE) == 130
        assert "Traceback" not in service.rest_of_stderr()


def test_the_configuration_file_and_flags_over_it(tmp_path: Path) -> None:
    config = tmp_path / "service.json"
    config.write_text(
        json.dumps(
            {
                "format": "mie-service/1",
                "origin": ORIGIN,
                "node": "from-file",
                "store": f"sqlite:{tmp_path / 'state.db'}",
            }
        )
    )
    with served("--config", str(config), "--node", "from-flag") as service:
        status, health = _get(service.url + "/v1/health")
        assert status == 200 and health["node"] == "from-flag"
        service.process.send_signal(signal.SIGTERM)
        assert service.process.wait(timeout=DEADLINE) == 0


def test_a_store_that_cannot_be_opened_is_one_line_no_traceback(tmp_path: Path) -> None:
    # A directory where the SQLite file should be: the service cannot start.
    (tmp_path / "state.db").mkdir()
    out = _mie(
        "serve", "--origin", ORIGIN, "--port", "0", "--store", f"sqlite:{tmp_path / 'state.db'}"
    )
    assert out.returncode == 2, out.stderr
    assert "--store" in (line := _one_error_line(out.stderr)) and "not a regular file" in line
    assert LISTENING not in out.stderr


def test_after_sigterm_nothing_listens(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(
        [sys.executable, "-m", "mie", "serve", "--origin", ORIGIN, "--port", "0", "--store",
         f"sqlite:{tmp_path / 'state.db'}"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )  # fmt: skip
    try:
        url, _ = _read_until_listening(process)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=DEADLINE) == 0
        with pytest.raises(OSError):
            _get(url + "/v1/health")
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=DEADLINE)


def test_a_store_unreachable_at_start_is_one_line_exit_1() -> None:
    # Nothing listens on port 1: the store fails as it is opened (an operational failure, as
    # for every command that uses a store: exit 1).
    out = _mie(
        "serve", "--origin", ORIGIN, "--port", "0", "--store",
        "postgresql://mie@127.0.0.1:1/mie?connect_timeout=2",
    )  # fmt: skip
    assert out.returncode == 1, out.stderr
    _one_error_line(out.stderr)
    assert LISTENING not in out.stderr


# The lifespan guard, on a scripted ASGI exchange.


class _Failing:
    """An ASGI app whose lifespan raises at ``phase`` (``startup`` or ``shutdown``)."""

    def __init__(self, phase: str) -> None:
        self.phase = phase

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await receive()
        if self.phase == "startup":
            raise ValueError("store unreachable")
        await send({"type": "lifespan.startup.complete"})
        await receive()
        raise ValueError("stop record not written")


@pytest.mark.parametrize("phase", ["startup", "shutdown"])
def test_the_lifespan_guard_keeps_the_error_and_sends_no_traceback(phase: str) -> None:
    from mie._cli.serve import _StartupGuard

    guard = _StartupGuard(_Failing(phase))
    sent: list[MutableMapping[str, Any]] = []
    incoming: list[MutableMapping[str, Any]] = [
        {"type": "lifespan.startup"},
        {"type": "lifespan.shutdown"},
    ]

    async def receive() -> MutableMapping[str, Any]:
        return incoming.pop(0)

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(message)

    asyncio.run(guard({"type": "lifespan"}, receive, send))
    assert isinstance(guard.error, ValueError)
    assert sent[-1] == {"type": f"lifespan.{phase}.failed", "message": ""}
    assert all("Traceback" not in str(m) for m in sent)


def test_a_store_in_a_directory_that_is_not_there_is_one_line_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # RS2: SQLite's 'SQLite store failed: unable to open database file', exit 1, naming
    # neither the file nor its directory; it is unreadable input (exit 2), named.
    store = f"sqlite:{tmp_path / 'no-such-dir' / 'state.db'}"
    assert run(["serve", "--origin", ORIGIN, "--port", "0", "--store", store]) == 2
    line = _one_error_line(capsys.readouterr().err)
    assert "--store" in line and "its directory does not exist" in line
    assert not (tmp_path / "no-such-dir").exists()


def test_an_audit_file_with_one_byte_changed_is_refused_before_it_listens(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Issue 11, bad input: an audit file with one byte changed. The service does not chain
    # its records after a broken trail: one line naming the first bad record, exit 2.
    from mie.audit import AuditEvent, AuditTrail, FileSink

    audit = tmp_path / "audit.jsonl"
    with FileSink.open(audit) as sink:
        trail = AuditTrail("node-a", [sink])
        for k in range(3):
            trail.append(AuditEvent("verify", rp=ORIGIN, client="local", reasons=(f"r{k}",)))
    data = bytearray(audit.read_bytes())
    data[data.index(b'"r1"') + 2] ^= 0x01  # 'r1' -> 's1' in record 2: still canonical JSON
    audit.write_bytes(bytes(data))
    store = f"sqlite:{tmp_path / 'state.db'}"
    args = ["serve", "--origin", ORIGIN, "--port", "0", "--store", store, "--audit", str(audit)]
    assert run([*args, "--node", "node-a"]) == 2
    err = capsys.readouterr().err
    line = _one_error_line(err)
    assert "not a valid audit trail" in line and "record 3 (line 3)" in line, line
    assert LISTENING not in err
    assert audit.read_bytes() == bytes(data)  # nothing appended, nothing cut


def test_a_public_address_without_tls_is_warned_about(tmp_path: Path) -> None:
    # RS2: with clients configured, mie serve --host 0.0.0.0 served plain HTTP with no word:
    # every caller's API key and every workstation's evidence in clear on the network.
    import hashlib

    config = tmp_path / "service.json"
    digest = hashlib.sha256(b"a key for this test").hexdigest()
    client = {"name": "iam", "key_sha256": digest, "scopes": ["verify"]}
    config.write_text(
        json.dumps({"format": "mie-service/1", "origin": ORIGIN, "clients": [client]})
    )
    store = f"sqlite:{tmp_path / 'state.db'}"
    public = ("--config", str(config), "--store", store, "--host", "0.0.0.0")  # noqa: S104
    for host_args, warned in ((public, True), (public[:-2], False)):
        with served(*host_args) as service:
            service.process.send_signal(signal.SIGTERM)
            assert service.process.wait(timeout=DEADLINE) == 0
            stderr = service.rest_of_stderr()
        assert ("without TLS: API keys and evidence travel in clear" in stderr) is warned, stderr


def test_without_store_it_uses_the_documented_default(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # RS2: with no --store the service kept its state in $XDG_STATE_HOME/mie/service.db, said
    # neither in --help nor in architecture.md (which said the store was required).
    assert run(["serve", "--help"]) == 0
    assert "default: $XDG_STATE_HOME/mie/service.db" in " ".join(capsys.readouterr().out.split())
    env = {**os.environ, "XDG_STATE_HOME": str(tmp_path / "state")}
    process = subprocess.Popen(
        [sys.executable, "-m", "mie", "serve", "--origin", ORIGIN, "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        _read_until_listening(process)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=DEADLINE) == 0
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=DEADLINE)
    assert (tmp_path / "state" / "mie" / "service.db").is_file()
