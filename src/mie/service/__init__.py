"""``mie serve``: the verification service an IAM calls (``mie[service]``: Starlette, uvicorn,
prometheus-client).

:func:`create_app` builds the ASGI application of a :class:`ServiceConfig` (read by
:func:`load_config`); :func:`run` serves it with uvicorn. ``import mie`` never loads this
package; importing it needs the ``service`` extra.
"""

from __future__ import annotations

from mie.service.app import create_app, run, uvicorn_config
from mie.service.config import ServiceConfig, ServiceConfigError, load_config

__all__ = [
    "ServiceConfig",
    "ServiceConfigError",
    "create_app",
    "load_config",
    "run",
    "uvicorn_config",
]
