"""Tests of mie.fido: the WebAuthn codecs; the client, verifier and emulator come next."""
