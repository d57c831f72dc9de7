"""``mie serve``: the IAM verification service (:mod:`mie.service`) under uvicorn.

The configuration is a ``mie-service/1`` file (``--config``) and/or the flags, which override
its members; ``--origin`` is required one way or the other. A configuration that cannot be used
(an unknown member, a bad value, open mode on a host other than loopback) is one line on
stderr, exit 2, before anything listens. The socket is bound here, before the application
starts, so a port in use is one line too; once the application has started (store, verifiers,
audit trail open) the command prints ``mie serve: node N listening on http://HOST:PORT`` on
stderr, once. SIGTERM stops it gracefully (requests in flight finish) and exits 0; Ctrl-C exits
130. ``mie.service`` (starlette, uvicorn, prometheus-client: ``mie[service]``) is imported only
when the command runs, so the rest of the CLI works without it.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
from collections.abc import Awaitable, Callable, MutableMapping
from types import FrameType
from typing import TYPE_CHECKING, Any

import click

from mie._cli.options import _check_sqlite_path, parse_store_url
from mie._cli.state import UsageError
from mie.core.errors import MieError

if TYPE_CHECKING:
    from mie.service.config import ServiceConfig

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8765
SERVICE_EXTRA = "pip install 'mie[service]'"

_Scope = MutableMapping[str, Any]
_Message = MutableMapping[str, Any]
_Receive = Callable[[], Awaitable[_Message]]
_Send = Callable[[_Message], Awaitable[None]]
_App = Callable[[_Scope, _Receive, _Send], Awaitable[None]]


def import_service() -> Any:
    """:return: the :mod:`mie.service` package.

    :raises UsageError: the service extra is not installed (the message says how).
    """
    try:
        import uvicorn  # noqa: F401

        import mie.service as service
    except ImportError as e:
        missing = getattr(e, "name", None) or str(e)
        raise UsageError(
            f"mie serve needs mie[service]: {SERVICE_EXTRA} ({missing} missing)"
        ) from e
    return service


def _absolute(path: str | None) -> str | None:
    return None if path is None else os.path.abspath(path)


def _store_url(url: str | None) -> str | None:
    """:return: the ``--store`` URL, a relative ``sqlite:PATH`` made absolute.

    :raises UsageError: a URL of no known form, or ``none`` (the service needs a store).
    """
    if url is None:
        return None
    parsed = parse_store_url(url)
    if parsed is None:
        raise UsageError("--store none: the service keeps its nonces in a store")
    backend, where = parsed
    if backend == "sqlite":
        _check_sqlite_path(url, where)  # a directory or a FIFO: named here, exit 2
        return "sqlite://" + os.path.abspath(where)
    return url


def build_config(
    *,
    config_file: str | None,
    origin: str | None,
    store: str | None,
    audit: str | None,
    node: str | None,
    trust: tuple[str, ...],
    crl: tuple[str, ...],
    badge_config: str | None,
    fido_policy: str | None,
    psc_claims: str | None,
    public_url: str | None,
    tls_cert: str | None,
    tls_key: str | None,
) -> ServiceConfig:
    """:return: the service configuration: the file's (if any), the flags over it.

    :raises UsageError: neither a file nor ``--origin``; one TLS file without the other.
    :raises ServiceConfigError: the file or a flag's value is refused (exit 2).
    """
    from mie.service.config import AuditConfig, RelayConfig, ServiceConfig, TlsConfig, TrustConfig

    if (tls_cert is None) != (tls_key is None):
        raise UsageError("--tls-cert and --tls-key go together")
    if config_file is not None:
        config = ServiceConfig.load(config_file)
    elif origin is not None:
        config = ServiceConfig(origin=origin)
    else:
        raise UsageError("mie serve needs --origin URI (or --config FILE naming one)")
    overrides: dict[str, Any] = {
        "origin": origin,
        "node": node,
        "store": _store_url(store),
        "badge_config": _absolute(badge_config),
        "fido_policy": _absolute(fido_policy),
        "psc_claims": _absolute(psc_claims),
    }
    if audit is not None:
        overrides["audit"] = AuditConfig(file=_absolute(audit), store=config.audit.store)
    if trust or crl:
        current = config.trust
        overrides["trust"] = TrustConfig(
            anchors=current.anchors + tuple(os.path.abspath(t) for t in trust),
            intermediates=current.intermediates,
            crls=current.crls + tuple(os.path.abspath(c) for c in crl),
            revocation=current.revocation,
            download=current.download,
        )
    if public_url is not None:
        overrides["relay"] = RelayConfig(
            public_url=public_url, session_timeout=config.relay.session_timeout
        )
    if tls_cert is not None and tls_key is not None:
        overrides["tls"] = TlsConfig(cert=os.path.abspath(tls_cert), key=os.path.abspath(tls_key))
    result: ServiceConfig = config.with_options(**overrides)
    return result


def bind(host: str, port: int) -> socket.socket:
    """:return: a listening TCP socket on ``host:port`` (port 0: one the system picks).

    :raises UsageError: the address cannot be resolved or taken (in use, not this machine's).
    """
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except (OSError, UnicodeError) as e:
        raise UsageError(f"--host {host!r}: {getattr(e, 'strerror', None) or e}") from e
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(2048)
        sock.set_inheritable(True)
    except OSError as e:
        sock.close()
        raise UsageError(f"Cannot listen on {host}:{port}: {e.strerror or e}") from e
    return sock


class _StartupGuard:
    """Wraps the application's lifespan: an exception while it starts (a store unreachable, a
    file unreadable) or stops is kept, to be reported as one line, and uvicorn is told without
    the traceback it would otherwise log."""

    def __init__(self, app: _App) -> None:
        self.app = app
        self.error: BaseException | None = None

    async def __call__(self, scope: _Scope, receive: _Receive, send: _Send) -> None:
        if scope["type"] != "lifespan":
            await self.app(scope, receive, send)
            return
        sent: set[str] = set()

        async def guarded_send(message: _Message) -> None:
            kind = str(message.get("type"))
            sent.add(kind)
            if kind.endswith(".failed"):
                message = {"type": kind, "message": ""}
            await send(message)

        try:
            await self.app(scope, receive, guarded_send)
        except Exception as e:
            self.error = e
            # uvicorn waits for the phase's answer: failed, without the traceback as message.
            phase = "shutdown" if "lifespan.startup.complete" in sent else "startup"
            if not {f"lifespan.{phase}.failed", f"lifespan.{phase}.complete"} & sent:
                await send({"type": f"lifespan.{phase}.failed", "message": ""})


def _listening_url(host: str, port: int, tls: bool) -> str:
    shown = f"[{host}]" if ":" in host else host
    return f"{'https' if tls else 'http'}://{shown}:{port}"


def _quiet_uvicorn() -> None:
    # uvicorn's own lines (startup, shutdown, a request's traceback) go through the mie handler
    # at WARNING and above; its "Application startup failed" is said by the one error line.
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).setLevel(logging.WARNING)
    logging.getLogger("uvicorn.error").addFilter(
        lambda record: (
            not record.getMessage().startswith(
                ("Application startup failed", "Application shutdown failed")
            )
        )
    )


def serve_forever(service: Any, config: ServiceConfig, sock: socket.socket, host: str) -> None:
    """Run the application on ``sock`` until SIGTERM (returns) or Ctrl-C (KeyboardInterrupt).

    :raises MieError: the application failed to start (the error it raised).
    """
    import uvicorn

    terminated: list[int] = []

    def on_term(signum: int, frame: FrameType | None) -> None:
        # uvicorn handles SIGTERM while it serves, then raises it again once it has shut down:
        # it lands here, the stop asked for (exit 0). One before uvicorn runs stops it too.
        terminated.append(signum)

    previous = signal.signal(signal.SIGTERM, on_term)
    try:
        _serve(uvicorn, service, config, sock, host, terminated)
    finally:
        signal.signal(signal.SIGTERM, previous)


def _serve(
    uvicorn: Any,
    service: Any,
    config: ServiceConfig,
    sock: socket.socket,
    host: str,
    terminated: list[int],
) -> None:
    port = int(sock.getsockname()[1])
    app = _StartupGuard(service.create_app(config, port=port))
    # The service's own uvicorn settings (plan D1); the socket bound here is passed to run().
    uv_config = service.uvicorn_config(app, config, host, port)
    tls = config.tls
    url = _listening_url(host, port, tls is not None)
    line = f"mie serve: node {config.node} listening on {url}"
    from mie.service.config import is_loopback

    if tls is None and not is_loopback(host):
        # Callers send their API key and the workstation's evidence in every request.
        logging.getLogger("mie.service").warning(
            "mie serve: %s without TLS: API keys and evidence travel in clear "
            "(give --tls-cert/--tls-key, or terminate TLS in front of it)",
            host,
        )

    class Server(uvicorn.Server):
        async def startup(self, sockets: list[socket.socket] | None = None) -> None:
            await super().startup(sockets)
            if self.started and not self.should_exit:
                click.echo(line, err=True)

    server = Server(uv_config)
    _quiet_uvicorn()
    if terminated:
        return
    try:
        server.run(sockets=[sock])
    except SystemExit as e:
        if app.error is not None:
            raise _start_failure(app.error) from app.error
        raise UsageError(f"The service did not start (exit {e.code})") from e
    if app.error is not None:
        raise _start_failure(app.error) from app.error


def _start_failure(error: BaseException) -> Exception:
    if isinstance(error, MieError | OSError | ValueError | ImportError):
        return error
    return UsageError(f"the service failed: {type(error).__name__}: {error}")


@click.command("serve")
@click.option(
    "--config",
    "config_file",
    type=click.Path(dir_okay=False),
    help="The service configuration (mie-service/1); the flags below override its members.",
)
@click.option("--host", default=DEFAULT_HOST, show_default=True, help="The address to listen on.")
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=DEFAULT_PORT,
    show_default=True,
    help="The TCP port (0: one the system picks, named in the listening line).",
)
@click.option("--origin", metavar="URI", help="The relying party's origin evidence is bound to.")
@click.option(
    "--store",
    metavar="URL",
    help="Shared state: sqlite:PATH, sqlite:///PATH or postgresql://... (nodes of one cluster "
    "share one PostgreSQL; default: $XDG_STATE_HOME/mie/service.db, else "
    "~/.local/state/mie/service.db).",
)
@click.option(
    "--audit",
    type=click.Path(dir_okay=False),
    help="Append the hash-chained audit trail to this JSON-lines file.",
)
@click.option("--node", metavar="N", help="This node's name (default: host name and port).")
@click.option(
    "--trust",
    multiple=True,
    type=click.Path(dir_okay=False),
    help="A trust anchor file (PEM/DER); repeatable.",
)
@click.option(
    "--crl", multiple=True, type=click.Path(dir_okay=False), help="A CRL file; repeatable."
)
@click.option(
    "--badge-config",
    type=click.Path(dir_okay=False),
    help="The badge configuration (mie-badge/1): keys, authorities, second factor.",
)
@click.option(
    "--fido-policy",
    type=click.Path(dir_okay=False),
    help="The FIDO policy (mie-fido-policy/1) of the FIDO2 ceremonies and assertions.",
)
@click.option(
    "--psc-claims",
    type=click.Path(dir_okay=False),
    help="The PSC claims mapping (mie-psc-claims/1; default: the packaged one).",
)
@click.option(
    "--public-url",
    metavar="URL",
    help="The relay URL agents reach this node at (wss://HOST/v1/relay/).",
)
@click.option("--tls-cert", type=click.Path(dir_okay=False), help="HTTPS certificate (PEM).")
@click.option("--tls-key", type=click.Path(dir_okay=False), help="HTTPS private key (PEM).")
def serve(
    config_file: str | None,
    host: str,
    port: int,
    origin: str | None,
    store: str | None,
    audit: str | None,
    node: str | None,
    trust: tuple[str, ...],
    crl: tuple[str, ...],
    badge_config: str | None,
    fido_policy: str | None,
    psc_claims: str | None,
    public_url: str | None,
    tls_cert: str | None,
    tls_key: str | None,
) -> int:
    """Run the IAM verification service: single-use challenges, evidence verification, the
    badge relay, FIDO2 ceremonies, PSC claims, the audit trail (OpenAPI at /openapi.json)."""
    service = import_service()
    config = build_config(
        config_file=config_file,
        origin=origin,
        store=store,
        audit=audit,
        node=node,
        trust=trust,
        crl=crl,
        badge_config=badge_config,
        fido_policy=fido_policy,
        psc_claims=psc_claims,
        public_url=public_url,
        tls_cert=tls_cert,
        tls_key=tls_key,
    )
    config.check_host(host)
    sock = bind(host, port)
    try:
        bound = int(sock.getsockname()[1])
        config = config.with_options(node=config.node_name(bound))
        serve_forever(service, config, sock, host)
    finally:
        sock.close()
    return 0
