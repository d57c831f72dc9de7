"""What one service node holds open: the store, the verifiers, the PSC mapping, the audit
trail, the metrics. Built at start (:meth:`ServiceContext.open`), closed at shutdown; handlers
read it from ``request.app.state.mie``.
"""

from __future__ import annotations

import datetime as dt
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from mie.service.config import ServiceConfig, ServiceConfigError
from mie.service.metrics import Metrics
from mie.store.base import Store

if TYPE_CHECKING:
    from mie.desfire.verify import BadgeVerifier
    from mie.fido.assertion import FidoVerifier
    from mie.fido.mds import MetadataIndex
    from mie.fido.policy import FidoPolicy
    from mie.trust.verify import Verifier


@dataclass
class ServiceContext:
    """The resources of one node (see the module docstring).

    :param config: the configuration.
    :param node: this node's name.
    :param store: the shared state.
    :param verifier: the CPx chain verifier.
    :param badges: the badge verifier, if a badge configuration is given.
    :param fido: the FIDO2 verifier, if a FIDO policy is given.
    :param psc: the PSC claims mapping (``mie.psc.PscMapping``), if available.
    :param audit: the audit trail (``mie.audit.AuditTrail``), if any sink is configured.
    :param relay: the relay sessions of this node (``mie.relay.iam.RelaySessions``), if any.
    """

    config: ServiceConfig
    node: str
    store: Store
    verifier: Verifier
    badges: BadgeVerifier | None = None
    fido: FidoVerifier | None = None
    fido_metadata: MetadataIndex | None = None
    psc: Any = None
    audit: Any = None
    relay: Any = None
    metrics: Metrics = field(default_factory=Metrics)
    clock: Callable[[], float] = time.time
    _closers: list[Callable[[], None]] = field(default_factory=list, repr=False)

    @property
    def origin(self) -> str:
        """:return: the origin evidence must be bound to."""
        return self.config.origin

    @property
    def fido_policy(self) -> FidoPolicy | None:
        """:return: the FIDO policy, if FIDO2 is configured."""
        return self.fido.policy if self.fido is not None else None

    @classmethod
    def open(cls, config: ServiceConfig, *, port: int | None = None) -> ServiceContext:
        """Open everything ``config`` names.

        :raises ServiceConfigError: a file it names cannot be used.
        :raises MieError: the store cannot be opened, a trust file does not parse...
        """
        store = open_service_store(config)
        closers: list[Callable[[], None]] = [store.close]
        try:
            ctx = cls(
                config=config,
                node=config.node_name(port),
                store=store,
                verifier=_cpx_verifier(config),
                _closers=closers,
            )
            if config.badge_config is not None:
                ctx.badges = _badge_verifier(config, store, closers)
            if config.fido_policy is not None:
                ctx.fido, ctx.fido_metadata = _fido_verifier(config, store)
            ctx.psc = _psc_mapping(config)
            ctx.audit = _audit_trail(config, ctx.node, store, closers)
        except BaseException:
            for close in reversed(closers):
                close()
            raise
        return ctx

    def close(self) -> None:
        """Close what :meth:`open` opened, last first."""
        closers, self._closers = self._closers, []
        for close in reversed(closers):
            close()


def open_service_store(config: ServiceConfig) -> Store:
    """Open the store the configuration names (default: ``service.db`` in the state
    directory).

    :raises ServiceConfigError: a URL of another form, PostgreSQL without psycopg.
    :raises StoreError: the store cannot be opened.
    """
    url = config.store or f"sqlite:///{_default_state_dir() / 'service.db'}"
    if url.startswith(("postgresql://", "postgres://")):
        try:
            from mie.store.postgres import PostgresStore
        except ImportError as e:
            raise ServiceConfigError(f"Store: PostgreSQL needs psycopg (mie[store]): {e}") from e
        return PostgresStore(url, pool_size=config.store_pool)  # type: ignore[call-arg,unused-ignore]
    if url.startswith("sqlite:///"):
        from mie.store.sqlite import SqliteStore

        return SqliteStore(url.removeprefix("sqlite://"))
    raise ServiceConfigError("Store: not sqlite:///PATH or postgresql://...")


def _default_state_dir() -> Any:
    from mie.core.paths import user_dir

    path = user_dir("state")
    path.mkdir(parents=True, exist_ok=True)
    return path


def _cpx_verifier(config: ServiceConfig) -> Verifier:
    from mie.trust.login import login_verifier
    from mie.trust.verify import RevocationMode

    trust = config.trust
    return login_verifier(
        trust=trust.anchors,
        intermediates=trust.intermediates,
        crls=trust.crls,
        revocation=RevocationMode(trust.revocation),
        download=trust.download,
    )


def _badge_verifier(
    config: ServiceConfig, store: Store, closers: list[Callable[[], None]]
) -> BadgeVerifier:
    from mie.desfire.config import BadgeConfig, open_keys
    from mie.desfire.verify import BadgeVerifier
    from mie.store.secondfactor import SecondFactor

    assert config.badge_config is not None  # noqa: S101 - the caller checked
    badge = BadgeConfig.load(config.badge_config)
    settings = badge.second_factor
    second = None
    if settings is not None:
        # One state: the badge PINs live in the service's store, never in a second one.
        if not _same_store(config, settings.store, settings.location):
            raise ServiceConfigError(
                "badge_config: its second_factor.store is not the service's store (split state)"
            )
        second = SecondFactor(store, max_failures=settings.max_failures)
    keys = None
    if badge.keys is not None:
        keys = open_keys(badge)
        closers.append(keys.close)
    return BadgeVerifier(badge, keys=keys, second_factor=second, lifecycle=store)


def _same_store(config: ServiceConfig, backend: str, location: str) -> bool:
    url = config.store or ""
    if backend == "postgresql":
        return url == location
    return url.removeprefix("sqlite://") == os.path.abspath(location)


def _fido_verifier(
    config: ServiceConfig, store: Store
) -> tuple[FidoVerifier, MetadataIndex | None]:
    from mie.fido.assertion import FidoVerifier
    from mie.fido.mds import MetadataIndex
    from mie.fido.policy import FidoPolicy

    assert config.fido_policy is not None  # noqa: S101 - the caller checked
    policy = FidoPolicy.load(config.fido_policy)
    host = config.origin.split("://", 1)[1].rsplit(":", 1)[0] if "]" not in config.origin else ""
    if host != policy.rp_id and not host.endswith("." + policy.rp_id):
        raise ServiceConfigError(
            f"fido_policy: rp_id {policy.rp_id!r} is not the origin's host or a suffix of it"
        )
    metadata = None
    if policy.metadata is not None:
        metadata = MetadataIndex.from_policy(
            policy.metadata, at=dt.datetime.now(dt.UTC), crls=policy.crl_set()
        )
    return FidoVerifier(policy, store, metadata=metadata), metadata


def _psc_mapping(config: ServiceConfig) -> Any:
    try:
        from mie.psc import PscMapping  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        if config.psc_claims is not None:
            raise ServiceConfigError("psc_claims: this mie has no PSC claims mapping") from None
        return None
    if config.psc_claims is None:
        return PscMapping.default()
    return PscMapping.load(config.psc_claims)


def _audit_trail(
    config: ServiceConfig, node: str, store: Store, closers: list[Callable[[], None]]
) -> Any:
    if config.audit.file is None and not config.audit.store:
        return None
    try:
        from mie.audit import AuditTrail, FileSink, StoreSink  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        if config.audit.file is not None:
            raise ServiceConfigError("audit.file: this mie has no audit trail") from None
        return None
    sinks: list[Any] = []
    if config.audit.file is not None:
        sink = FileSink.open(config.audit.file)
        closers.append(sink.close)
        sinks.append(sink)
    if config.audit.store:
        sinks.append(StoreSink(store, node))
    return AuditTrail(node, sinks)


__all__ = ["ServiceContext", "open_service_store"]
