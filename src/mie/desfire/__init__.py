"""MIFARE DESFire EV1/EV2/EV3 badges as identification means (issue 9).

The submodules load on demand: ``import mie.desfire.crypto`` needs only :mod:`cryptography`
and :mod:`mie.core.errors`, never the card, trust or ASN.1 code.
"""
