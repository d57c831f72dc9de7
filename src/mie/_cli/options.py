"""Option types shared by the commands."""

from __future__ import annotations

import math

import click


class Seconds(click.ParamType):
    """A duration in seconds: a finite number, above zero (or from zero with ``zero_ok``), at
    most ``maximum``. ``nan`` and ``inf`` are refused: every wait has a deadline.

    :param zero_ok: accept ``0`` (do not wait).
    :param maximum: the largest value accepted, if any.
    """

    name = "seconds"

    def __init__(self, *, zero_ok: bool = False, maximum: float | None = None) -> None:
        self.zero_ok = zero_ok
        self.maximum = maximum

    def convert(
        self, value: object, param: click.Parameter | None, ctx: click.Context | None
    ) -> float:
        try:
            seconds = float(value)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            self.fail(f"{value!r} is not a number of seconds", param, ctx)
        low = "0 or more" if self.zero_ok else "more than 0"
        high = f" and at most {self.maximum:g}" if self.maximum is not None else ""
        too_low = seconds < 0 if self.zero_ok else seconds <= 0
        too_high = self.maximum is not None and seconds > self.maximum
        if not math.isfinite(seconds) or too_low or too_high:
            self.fail(f"{value!r}: seconds must be finite, {low}{high}", param, ctx)
        return seconds

    def get_metavar(self, param: click.Parameter, ctx: click.Context) -> str:
        return "SECONDS"
