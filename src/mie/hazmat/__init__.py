"""Hazardous materials: code that exists only to leave an insecure state behind.

Nothing here is imported by the rest of :mod:`mie`, and every entry point needs an explicit
opt-in argument. :mod:`mie.hazmat.desfire_legacy` authenticates once to a blank DESFire badge's
DES/3DES master key so that enrolment can replace it with an AES key at once.
"""
