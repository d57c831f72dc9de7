"""Inputs fuzz runs found, kept so each keeps holding the oracle once fixed.

Each entry names its target, what the run saw (exception and place), and the input. Reproduce one
with ``python scripts/fuzz.py --reproduce TARGET --base64 INPUT``. Inputs of the OCSP, CRL and
session targets carry certificates of the TEST PKI of the run that found them; against this run's
PKI they still reach the code that failed (parsing comes before any key or name comparison).
"""

from __future__ import annotations

import base64
from dataclasses import dataclass

import pytest

from tests.fuzz.context import Context
from tests.fuzz.harness import check
from tests.fuzz.targets import TARGETS, Run


@dataclass(frozen=True)
class Regression:
    """One input a fuzz run found.

    :param target: the fuzz target.
    :param found: what the run saw (exception, where), before the fix.
    :param data: the input, base64.
    """

    target: str
    found: str
    data: str

    @property
    def id(self) -> str:
        return f"{self.target}-{self.found.split()[0]}"


REGRESSIONS = [
    # A 17-byte ATR that no CPx pattern matches reaches the CPS4 pattern whose mask has 16
    # bytes: zip(strict=True) raises ValueError out of detect_family (CpxAuthenticator()).
    Regression(
        "atr",
        "ValueError mie/cards/cpx.py:64 zip() argument 3 is shorter than arguments 1-2",
        "O9wY/wAAEiUAZIAABAEAkBA=",
    ),
    # OCSP answers (found before 42d37fc, fixed there): a responder key hash of the wrong type,
    # an unknown signature algorithm, a responder certificate with an unknown key type.
    Regression(
        "ocsp",
        "ValueError mie/trust/ocsp.py:159 error parsing asn1 value (ResponderID)",
        "MIICRAoBAKCCAj0wggI5BgkrBgEFBQcwAQEEggIqMIICJjCCAQ6hgYEwfzELMAkGA1UEBhMCRlIxEzARBgNVBAr+"
        "CkFTSVAtU0FOVEUxFzAVBgNVBAsMDjAwMDIgMTg3NTEyNzUxMRcwFQYDVQQLDA5JR0MtU0FOVEUgVEVTVDEpMCcG"
        "A1UEAwwgVEVTVCBBQyBJR0MtU0FOVEUgRk9SVCBQRVJTT05ORVMYDzIwMjYxMjAxMDkxOTE2WjB3MHUwTTAJBgUr"
        "DgMCGgUABBTbSgMB/6yTsj95Fr4tqN0pXDWtsQQUPtkrGJsHfZrgYQs9GVNScMSVgJ8CFEZLzMkDMJFHiyHYEYVn"
        "o8apQExpggAYDzIwMjYxMjAxMDkxODE2WqARGA8yMDI2MTIwMjA5MTkxNlowDQYJKoZIhvcNAQELBQADggEBACOM"
        "9/+hv2kOod5OfzoFAGCBaITQDzZl+VNTd7nRGG8fsR0QZjGko/tIIJfw6+OIdI97hYQ058I5pluPVioc1MjjucCy"
        "WTDAldl49kTiWt0OAHBEcOfdORcdVLS1f85UFG2PZ7rHQ9arjsXEpb2ZezwVHcpyb7aa7yzwMcV8bJt6L9yUdU/T"
        "EikXSFYIM6gsJiR3mCnpt4Yl22bARt3EvV9NGe8fpDynPECvtofOujs84pEi8LsTQeUyxSYXnqN0w0AXYTHIx2Bw"
        "UHKf7QI82CEtwCAYSmJt92un9bdRuExAiINB0QHfNEr9LQ4WK4WE6ab+NPKj00qdwf3Nb2Ma1WE=",
    ),
    Regression(
        "ocsp",
        "UnsupportedAlgorithm mie/trust/ocsp.py:149 signature algorithm 1.2.840.113549.1.1.9",
        "MIIB1woBAKCCAdAwggHMBgkrBgEFBQcwAQEEggG9MIIBuTCBoqIWBBQ+2SsYmwd9muBhCz0ZU1JwxJWAnxgPMjAy"
        "NjEyMDEwOTE5MTZaMHcwdTBNMAkGBSsOAwIaBQAEFNtKAwH/rJOyP3kWvi2o3SlcNa2xBBQ+2SsYmwd9muBhCz0Z"
        "U1JwxJWAnwIURkvMyQMwkUeLIdgRhWejxqlATGmAABgPMjAyNjEyMDEwOTE4MTZaoBEYDzIwMjYxMjAyMDkxOTE2"
        "WjANBgkqhkiG9w0BAQkFAAOCAQEAEGECyhAnhueljpNQLfNTyThG7WDllHrB/SeTzasoJEYJTENJ/XFxEubZclRh"
        "0B3c6e/FNitM7NQvglklYeF2l7PTzlZ0nmdgr/yHYTt2bzK46GrqEe8D+ZeSHdY85Vx1pqADsrUvz2kN4wnWSMSL"
        "hV8+k0pyh2060kDJ836L3aO3ca6EUZLYeUaqkKYl61R+kdgBKWPawzTGGA2ObzdxNZxJlM/VlV1Bckh4VZ2PtLwB"
        "OC8PVKU8nnrAATZAHjAHavSbVZWgi6+h+TpmNUtNCVLKM2ZVPs9JTGXlpY2OUr+FIRd26Gk2VYKo4suF5uSftliU"
        "onOVLodd8sE2wD/mPQ==",
    ),
]

_PREPARED: dict[str, Run] = {}


def _prepared(name: str, context: Context) -> Run:
    if name not in _PREPARED:
        _PREPARED[name] = TARGETS[name].prepare(context)
    return _PREPARED[name]


@pytest.mark.parametrize("regression", REGRESSIONS, ids=lambda r: r.id)
def test_fuzz_finding_holds_the_oracle(regression: Regression, fuzz_context: Context) -> None:
    data = base64.b64decode(regression.data)
    finding = check(_prepared(regression.target, fuzz_context), data)
    assert finding is None, f"{finding} (first seen: {regression.found})"
