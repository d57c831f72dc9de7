"""Fuzz targets for every parser of outside bytes and every emulator's APDU handler.

:mod:`tests.fuzz.targets` defines them; ``scripts/fuzz.py`` runs them coverage-guided under
atheris (``make fuzz``); ``test_targets.py`` runs a short deterministic pass of each in the
suite; ``test_regressions.py`` keeps every input a fuzz run found. See ``docs/reliability.md``.
"""
