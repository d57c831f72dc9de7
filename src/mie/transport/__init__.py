"""Card transports.

Each hardware backend is the only importer of its stack: :mod:`mie.transport.pcsc` of pyscard
(``mie[pcsc]``), later :mod:`mie.transport.nfc` of nfcpy (``mie[nfc]``).
:mod:`mie.transport.replay` records and replays sessions and needs no hardware stack.
"""
