"""Where :mod:`mie` keeps per-user files: the one reader of the ``XDG_*`` variables."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

_XDG = {
    "config": ("XDG_CONFIG_HOME", ".config"),
    "cache": ("XDG_CACHE_HOME", ".cache"),
    "state": ("XDG_STATE_HOME", ".local/state"),
}


def user_dir(
    kind: Literal["config", "cache", "state"], *parts: str, env: str | None = None
) -> Path:
    """A per-user directory of :mod:`mie` (not created).

    :param kind: ``config`` (trust anchors the operator added), ``cache`` (CRLs, the TEST PKI)
        or ``state`` (the service's default store).
    :param parts: the path below ``mie/`` in that directory.
    :param env: a variable that, when set and not empty, names the directory itself (for
        example ``MIE_TRUST_DIR``); ``parts`` are then not appended.
    :return: ``$env``, else ``$XDG_CONFIG_HOME/mie/…``, ``$XDG_CACHE_HOME/mie/…`` or
        ``$XDG_STATE_HOME/mie/…``, else ``~/.config/mie/…``, ``~/.cache/mie/…`` or
        ``~/.local/state/mie/…``.
    """
    if env is not None:
        explicit = os.environ.get(env)
        if explicit:
            return Path(explicit)
    variable, fallback = _XDG[kind]
    base = os.environ.get(variable) or str(Path.home() / fallback)
    return Path(base, "mie", *parts)
