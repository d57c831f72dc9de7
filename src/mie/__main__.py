"""``python -m mie``."""

from mie._cli.__main__ import main

main()
