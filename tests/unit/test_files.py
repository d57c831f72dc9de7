"""One atomic writer (with fsync of the file and its directory) and one lookup of the per-user
directories."""

from __future__ import annotations

import os
import re
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from mie.core.files import atomic_write
from mie.core.paths import user_dir
from mie.emulation.registry import default_pki_dir
from mie.emulation.testpki import Gamme, TestPki
from mie.transport.replay import Exchange, Vector, load_vector

ROOT = Path(__file__).resolve().parents[2]
VECTOR = Vector("d", "emulator", "iso7816", b"\x3b\x00", [Exchange("00a4000c", b"\x90\x00")])


def _fsyncs(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Record what each ``os.fsync`` flushed: ``file`` or ``dir``."""
    seen: list[str] = []
    real = os.fsync

    def fsync(fd: int) -> None:
        seen.append("dir" if stat.S_ISDIR(os.fstat(fd).st_mode) else "file")
        real(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    return seen


def test_vector_save_flushes_the_file_and_its_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Issue 8 item 7: Vector.save renamed without fsync (a crash could leave an empty vector).
    seen = _fsyncs(monkeypatch)
    target = tmp_path / "v.json"
    VECTOR.save(target)
    assert seen == ["file", "dir"]
    assert load_vector(target) == VECTOR
    assert stat.S_IMODE(target.stat().st_mode) == 0o644


def test_published_crls_are_flushed_too(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from mie.emulation.testpki import TestPki

    pki = TestPki.load(os.environ["MIE_TEST_PKI"])
    seen = _fsyncs(monkeypatch)
    pki.publish_crls(tmp_path)
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files and all(re.fullmatch(r"[ac]rl-[a-z]+\.der", name) for name in files)
    assert seen == ["file", "dir"] * len(files)


def test_atomic_write_is_private_by_default_and_creates_the_directory(tmp_path: Path) -> None:
    target = tmp_path / "a" / "b" / "f"
    atomic_write(str(target), b"data")
    assert target.read_bytes() == b"data"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert os.listdir(target.parent) == ["f"]


def test_atomic_write_that_fails_keeps_the_old_content_and_no_temporary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "f"
    target.write_bytes(b"old")

    def replace(src: str, dst: str) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", replace)
    with pytest.raises(OSError, match="disk full"):
        atomic_write(target, b"new")
    assert target.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["f"]


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    for name in ("XDG_CONFIG_HOME", "XDG_CACHE_HOME", "MIE_TEST_PKI", "MIE_X"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    return tmp_path


def test_user_dir_falls_back_to_the_home_directory(clean_env: Path) -> None:
    home = clean_env / "home"
    assert user_dir("config", "trust") == home / ".config" / "mie" / "trust"
    assert user_dir("cache", "crl") == home / ".cache" / "mie" / "crl"
    assert user_dir("cache") == home / ".cache" / "mie"


def test_user_dir_follows_xdg_then_the_named_variable(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(clean_env / "cfg"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(clean_env / "cch"))
    assert user_dir("config", "trust", env="MIE_X") == clean_env / "cfg" / "mie" / "trust"
    assert user_dir("cache", "crl", env="MIE_X") == clean_env / "cch" / "mie" / "crl"
    monkeypatch.setenv("MIE_X", "")
    assert user_dir("cache", "crl", env="MIE_X") == clean_env / "cch" / "mie" / "crl"
    monkeypatch.setenv("MIE_X", str(clean_env / "explicit"))
    assert user_dir("cache", "crl", env="MIE_X") == clean_env / "explicit"


def test_the_emulators_pki_directory_resolves_through_user_dir(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert default_pki_dir() == clean_env / "home" / ".cache" / "mie" / "testpki"
    monkeypatch.setenv("XDG_CACHE_HOME", str(clean_env / "cch"))
    assert default_pki_dir() == clean_env / "cch" / "mie" / "testpki"
    monkeypatch.setenv("MIE_TEST_PKI", str(clean_env / "pki"))
    assert default_pki_dir() == clean_env / "pki"


# A quoted variable name is a read (docstrings name them without quotes).
_XDG_READ = re.compile(r"[\"']XDG_[A-Z_]+[\"']")


def test_only_core_paths_reads_the_xdg_variables() -> None:
    readers = [
        str(path.relative_to(ROOT))
        for path in sorted((ROOT / "src" / "mie").rglob("*.py"))
        if _XDG_READ.search(path.read_text(encoding="utf-8"))
    ]
    assert readers == ["src/mie/core/paths.py"]


def test_vector_save_does_not_create_a_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        VECTOR.save(tmp_path / "absent" / "v.json")
    assert os.listdir(tmp_path) == []


def test_processes_loading_a_fresh_test_pki_directory_at_once_share_one_pki(
    tmp_path: Path,
) -> None:
    # Each used to create CAs of its own; the last writer's files won, and the other process's
    # card then had certificates that no saved CA had signed.
    directory = tmp_path / "testpki"
    script = (
        "import sys\n"
        "from mie.emulation.testpki import Gamme, TestPki\n"
        "root = TestPki.load(sys.argv[1]).roots[Gamme.FORT].certificate\n"
        "print(root.fingerprint(root.signature_hash_algorithm).hex())\n"
    )
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", script, str(directory)], stdout=subprocess.PIPE, text=True
        )
        for _ in range(3)
    ]
    printed = {process.communicate(timeout=120)[0].strip() for process in processes}
    assert all(process.returncode == 0 for process in processes)
    saved = TestPki.load(directory).roots[Gamme.FORT].certificate
    assert printed == {saved.fingerprint(saved.signature_hash_algorithm).hex()}  # type: ignore[arg-type]


def _fifo(path: Path) -> Path:
    os.mkfifo(path)
    return path


def _socket(path: Path) -> Path:
    import socket

    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(str(path))
    sock.close()
    return path


def _link(path: Path) -> Path:
    target = path.with_name("linked")
    target.write_bytes(b"old")
    path.symlink_to(target)
    return path


def _directory(path: Path) -> Path:
    path.mkdir()
    return path


@pytest.mark.parametrize(
    ("make", "kind"),
    [
        (_fifo, "a FIFO"),
        (_socket, "a socket"),
        (_link, "a symbolic link"),
        (_directory, "a directory"),
    ],
)
def test_atomic_write_refuses_a_destination_that_is_not_a_regular_file(
    tmp_path: Path, make: Any, kind: str
) -> None:
    # Review of issue 10: the rename replaced whatever was there (a FIFO, a socket, a link by a
    # file; /dev/null itself when run as root).
    from mie.core.errors import ErrorCode, MieError
    from mie.core.files import NotARegularFileError

    target = make(tmp_path / "out")
    before = sorted(os.listdir(tmp_path))
    mode = os.lstat(target).st_mode
    with pytest.raises(NotARegularFileError) as caught:
        atomic_write(target, b"new")
    error = caught.value
    assert isinstance(error, MieError) and isinstance(error, OSError)
    assert error.code is ErrorCode.USAGE and error.filename == str(target)
    assert str(error) == f"{target}: {kind}, not a regular file: not replaced"
    assert sorted(os.listdir(tmp_path)) == before  # no temporary left, nothing replaced
    assert os.lstat(target).st_mode == mode
    if kind == "a symbolic link":
        assert (tmp_path / "linked").read_bytes() == b"old"


@pytest.mark.skipif(os.geteuid() != 0, reason="only root can replace /dev/null")
def test_atomic_write_as_root_leaves_dev_null_a_device(tmp_path: Path) -> None:
    from mie.core.files import NotARegularFileError

    with pytest.raises(NotARegularFileError, match="a character device"):
        atomic_write("/dev/null", b"new", parents=False)
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)
    assert not [p for p in os.listdir("/dev") if p.startswith(".tmp-")]


def test_atomic_write_still_replaces_a_regular_file(tmp_path: Path) -> None:
    target = tmp_path / "f"
    target.write_bytes(b"old")
    os.chmod(target, 0o644)
    atomic_write(target, b"new")
    assert target.read_bytes() == b"new"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600


def test_callers_refuse_a_fifo_and_the_cli_says_it_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from mie._cli.__main__ import run
    from mie.core.files import NotARegularFileError
    from mie.emulation import ctap2_state

    fifo = _fifo(tmp_path / "fifo")
    with pytest.raises(NotARegularFileError):
        VECTOR.save(fifo)
    with pytest.raises(NotARegularFileError):
        ctap2_state.save_state(fifo, b"{}")
    assert run(["record", "--out", str(fifo), "--", "demo", "--only", "iso7816"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err == f"mie: error: {fifo}: a FIFO, not a regular file: not replaced\n"
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)
