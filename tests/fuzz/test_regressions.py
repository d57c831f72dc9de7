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

from tests.fuzz.context import SERIALS, Context
from tests.fuzz.harness import Run, check, records
from tests.fuzz.targets import TARGETS


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
    # OCSP answers (found before 42d37fc, fixed there): a ResponderID that does not parse (an
    # unknown signature algorithm is built per run below: it is reached only with this run's CA).
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
    # Found by a 5,000-input run of every target on 9db3b1b, the code before issue 7's fixes
    # (items 2, 4, 6, 10, 12); they hold on the fixed code. One input per exception and place.
    Regression(
        "card-certificate",
        "UnsupportedAlgorithm mie/auth.py:279 Unknown key type: 2.11049.7161.8.1884035.1",
        "ATCCBJMwggN7oAMCAQICFFOmzRXOhJIuaziabDm+co44E1xvMA0GCSqGSIb3DQEBCwUAMH8xCzAJBgNVBAYTAkZS"
        "MRMwEQYDVQQKDApBU0lQLVNBTlRFMRcwFQYDVQQLDA4wMDAyIDE4NzUxMjc1MTEXMBUGA1UECwwOSUdDLVNBTlRF"
        "IFRFU1QxKTAnBgNVBAMMIFRFU1QgQUMgSUdDLVNBTlRFIEZPUlQgUEVSU09OTkVTMB4XDTI2MTIwMTA5MjI1MVoX"
        "DTI5MTEzMDA5MjI1MVowUzELMAkGA1UEBhMCRlIxETAPBgNVBAwMCE3DqWRlY2luMTEwCwYDVQQqDARKRUFOMA0G"
        "A1UEBAwGRFVQT05UMBMGA1UEAwwMODEwMTAwMDk5ODc3MIIBIjANBgnWebd5CPL/AwEFAAOCAQ8AMIIBCgKCAQEA"
        "3MYxdyGvg7SJW4SUepLQT3Yj+qmIdOqPLVoxXXrZTRrUnUHmDAfRurMbhX604jKyjan1yh5hbBvivQBppLcM0ow9"
        "k/iVUCAisGkJAQOMyV4B8t78/RA39ktHF4dFvcQVfhN1jIRCd8PafbUrxLu+GM9RXMl3CIPvMXwgckv6A8WmPOvW"
        "Y/WwzcL9EfEHlUJgbesI/Ohmfe3R1XZt+tYPWylEbYJR8LLbRZGFapyDuGG2dldbdPys9+1bQ0mpS5YKzW+YLwK+"
        "M5gagyI4wzmFNBXfY9kEqSgzvXD0dStBMT6BoW/Y4cZrXtEbqTSnQYa0i7Q9Zm8DRobDYgYWPwc6OQIDAQABo4IB"
        "MTCCAS0wCQYDVR0TBAIwADAdBgNVHQ4EFgQULpPHQ5q+tIcIo8A9ieK0Z0VzvAAwHwYDVR0jBBgwFoAUKGp320ML"
        "OjlPup7jqk7EmZAxHxgwDgYDVR0PAQH/BAQDAgWgMB0GA1UdJQQWMBQGCCsGAQUFBwMCBggrBgEFBQcDBDAaBgNV"
        "HSAEEzARMA8GDSqBegGBVQEHAgEBAgEwPQYDVR0fBDYwNDAyoDCgLoYsaHR0cDovLzEyNy4wLjAuMTo4MDg4L2Ny"
        "bC9BQ0ktRk8tUFAtVEVTVC5jcmwwDwYIKoF6AUcBAgUEAwQBgDAPBggqgXoBRwECAgQDAgEAMCMGCCqBegFHAQID"
        "BBcTFTgwMjUwMDAwMDEvMjkwMDAwMDAxMTAPBggqgXoBRwECBwQDAgEKMA0GCSqGSIb3DQEBCwUAA4IBAQBAkWDe"
        "9/zPAX1lz70iYNDZWXEOpvpD8zG6xuxa/1SFcwpiDnK45rlievalP1bQcNlWLW01ZIbGspp3Qy4qFA+SMHxQjSnD"
        "vUGuFwKjeAYFTbqiA18vGympM+s5yKBBYonDI4MSF2GVEWFR+4JVlK8hEFi6zrLSidHqgRBcCQ3DcoAW7ZDFNeI7"
        "ulPktaH7Mtm4oOSVkA4uKJKFWK1EVF0w0EUPAh+zQiDd+UxJ7SRwsCe6VePcKI8huARoz3+kAQ7GNwUWUFbbxO+c"
        "PdsoWeRvECRCMub/+xQpYtbSmEMVpewst3s8hneFOTWATJ2kBGm6Sxbb201z6Fn0QrJMlYxm",
    ),
    Regression(
        "card-certificate",
        "ValueError mie/trust/identity.py:182 error parsing asn1 value: ParseError { kind: Invali",
        "ATCCBJMwggN7oAMCAQICFFOmzRXOhJIuaziabDm+co44E1xvMA0GCSqGSIb3DQEBCwUAMH8xCzAJBgNVBAYTAkZS"
        "MRMwEQYDVQQKDApBU0lQLVNBTlRFMRcwFQYDVQQLDA4wMDAyIDE4NzUxMjc1MTEXMBUGA1UECwwOS0dDLVNBTlRF"
        "IFRFU1QxKTAnBgNVBAMMIFRFU1QgQUMgSUdDLVNBTlRFIEZPUlQgUEVSU09OTkVTMB4XDTI2MTIwMTA5MjI1MVoX"
        "DTI5MTEzMDA5MjI1MVowUzELMAkGA1UEBhMCRlIxETAPBgNVBAwMCE3DqWRlY2luMTEwCwYDVQQqDARKRUFOMA0G"
        "A1UEBAwGRFVQT05UMBMGA1UEAwwMODEwMTAwMDk5ODc3MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA"
        "3MYxdyGvg7SJW4SUepLQT3Yj+qmIdOqPLVoxXXrZTRrUnUHmDAfRurMbhX604jKyjan1yh5hbBvivQBppLcM0ow9"
        "k/iVUCAisGkJAQOMyV4B8t78/RA39ktHF4dFvcQVfhN1jIRCd8PafbUrxLu+GM9RXMl3CIPvMXwgckv6A8WmPOvW"
        "Y/WwzcL9EfEHlUJgbesI/Ohmfe3R1XZt+tYPWylEbYJR8LLbRZGFapyDuGG2dldbdPys9+1bQ0mpS5YKzW+YLwK+"
        "M5gagyI4wzmFNBXfY9kEqSgzvXD0dStBMT6BoW/Y4cZrXtEbqTSnQYa0i7Q9Zm8DRobDYgYWPwc6OQIDAQABo4IB"
        "MTCCAS0wCQYDVR0TBAIwADAdBgNVHQ4EFgQULpPHQ5q+tIcIo8A9ieK0Z0VzvAAwHwYDVR0jBBgwFoD//2p320ML"
        "OjlPup7jqk7EmZAxHxgwDgYDVR0PAQH/BAQDAgWgMB0GA1UdJQQWMBQGCCsGAQUFBwMCBggrBgEFBQcDBDAaBgNV"
        "HSAEEzARMA8GDSqBegGBVQEHAgEBAgEwPQYDVR0fBDYwNDAyoDCgLoYsaHR0cDovLzEyNy4wLjAuMTo4MDg4L2Ny"
        "bC9BQ0ktRk8tUFAtVEVTVC5jcmwwDwYIKoF6AUcBAgUEAwQBgDAPBggqgXoBRwECAgQDAgEAMCMGCCqBegFHAQID"
        "BBcTFTgwMjUwMDAwMDEvMjkwMDAwMDAxMTAPBggqgXoBRwECBwQDAgEKMA0GCSqGSIb3DQEBCwUAA4IBAQBAkWDe"
        "9/zPAX1lz70iYNDZWXEOpvpD8zG6xuxa/1SFcwpiDnK45rlievalP1bQcNlWLW01ZIbGspp3Qy4qFA+SMHxQjSnD"
        "vUGuFwKjeAYFTbqiA18vGympM+s5yKBBYonDI4MSF2GVEWFR+4JVlK8hEFi6zrLSidHqgRBcCQ3DcoAW7ZDFNeI7"
        "ulPktaH7Mtm4oOSVkA4uKJKFWK1EVF0w0EUPAh+zQiDd+UxJ7SRwsCe6VePcKI8huARoz3+kAQ7GNwUWUFbbxO+c"
        "PdsoWeRvECRCMub/+xQpYtbSmEMVpewst3s8hneFOTWATJ2kBGm6Sxbb201z6Fn0QrJMlYxm",
    ),
    Regression(
        "card-certificate",
        "ValueError mie/auth.py:235 Could not deserialize key data. The data may be in an incorre",
        "ADCCBJMwggN7oAMCAQICFAFj6dmIWWYBdfWbe+bxaO/ipAdEMA0GCSqGSIb3DQEBCwUAMH8xCzAJBgNVBAYTAkZS"
        "MRMwEQYDVQQKDApBU0lQLVNBTlRFMRcwFQYDVQQLDA4wMDAyIDE4NzUxMjc1MTEXMBUGA1UECwwOSUdDLVNBTlRF"
        "IFRFU1QxKTAnBgNVBAMMIFRFU1QgQUMgSUdDLVNBTlRFIEZPUlQgUEVSU09OTkVTMB4XDTI2MTIwMTA5MjI1MVoX"
        "DTI5MTEzMDA5MjI1MVowUzELMAkGA1UEBhMCRlIxETAPBgNVBAwMCE3DqWRlY2luMTEwCwYDVQQqDARKRUFOMA0G"
        "A1UEBAwGRFVQT05UMBMGA1UEAwwMODEwMTAwMDk5ODc3MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA"
        "vlfQhOtzA1Fy+wxywhhnsYX0eDQjzYU8xXNaiFiJfnsuc3LXMFyLLBoENgCqf4cXKQ++ywG0jzUFAF/i2bO638ae"
        "m7fFHrh7VMdGcI5bwySvc4uXMl4UGa1aAExDRW6CosOGoOruyGbitvuwrmCp07zm9b5PsfMqEOvUwjBq8A/hurJr"
        "7oTSd8YgqSPxs03pKrCw2R0EYYbeLtqnN9Fk0DwsUGwoqdBy6xmeMil+dkC79qcqC1kyo3BMsVRJg2tP09GsBEDG"
        "EAZb8pLO1+Or+K1WtDhOYru40n6xIlvVXlO8LF0qcXdbZVAUCtSgItbcj1ypbi21Bhd/sx5iK2aN43BdqAABo4IB"
        "MTCCAS0wCQYDVR0TBAIwADAdBgNVHQ4EFgQUeEgGwIvcrEEsoTAeinCpnE4XqdcwHwYDVR0jBBgwFoAUKGp320ML"
        "OjlPup7jqk7EmZAxHxgwDgYDVR0PAQH/BAQDAgWgMB0GA1UdJQQWMBQGCCsGAQUFBwMCBggrBgEFBQcDBDAaBgNV"
        "HSAEEzARMA8GDSqBegGBVQEHAgEBAgEwPQYDVR0fBDYwNDAyoDCgLoYsaHR0cDovLzEyNy4wLjAuMTo4MDg4L2Ny"
        "bC9BQ0ktRk8tUFAtVEVTVC5jcmwwDwYIKoF6AUcBAgUEAwQBgDAPBggqgXoBRwECAgQDAgEAMCMGCCqBegFHAQID"
        "BBcTFTgwMjUwMDAwMDEvMjgwMDAwMDAxMTAPBggqgXoBRwECBwQDAgEKMA0GCSqGSIb3DQEBCwUAA4IBAQBjc1qI"
        "WIl+ey5zctcwXIssGgQ2AKp/hxcpD77LAbSPNQUAX+LZs7rfxp6bt8UeuHtUx0ZwjlvDJK9zi5cyXhQZrVoATENF"
        "boKiw4ag6u7IZuK2+7CuYKnTvOb1vk+x8yoQ69TCMGrwD+G6smvuhNJ3xiCpI/GzTekqsLDZHQRhht4u2qc30WTQ"
        "PCxQbCip0HLrGZ4yKX52QLv2pyoLWTKjcEyxVEmDa0/T0awEQMYQBlvyks7X46v4rVa0OE5iu7jSfrEiW9VeU7ws"
        "XSpxd1tlUBQK1KAi1tyPXKluLbUGF3+zHmIrZo3jcF2ozkdtbdQ8kPqPYYlRgX1gCoCIgbHV",
    ),
    Regression(
        "card-certificate",
        "ValueError mie/auth.py:279 Could not deserialize key data. The data may be in an incorre",
        "AzCCBK0wggOVoAMCAQICFG/UkYW6APVZEkCpbYxy1bwQjbX0MA0GCSqGSIb3DQEBCwUAMH8xCzAJBgNVBAYTAkZS"
        "MRMwEQYDVQQKDApBU0lQLVNBTlRFMRcwFQYDVQQLDA4wMDAyIDE4NzUxMjc1MTEXMBUGA1UECwwOSUdDLVNBTlRF"
        "IFRFU1QxKTAnBgNVBAMMIFRFU1QgQUMgSUdDLVNBTlRFIEZPUlQgUEVSU09OTkVTMB4XDTI2MTIyMTA5MjI1MloX"
        "DTI5MTEzMDA5MjI1MlowbTELMAkGA1UEBhMCRlIxETAPBgNVBAwMCE3DqWRlY2luMUswDAYDVQQqDAVMVUNJRTAO"
        "BgNVBAQMB0JFUk5BUkQwKwYDVQQDDCQ0ZjBiN2MxZS01ZDJhLTRjOGUtOWEzYi02ZTFmMmQ3YzhiOTAwggEiMA0G"
        "CSqGSIb3DQEBAQUAA4IBDwAwggEKAoIBAQDHoe/kvF5ov8dwgjq3vsNS5XRzWpD3USjseVRnk+nHSALzi9okkpnk"
        "WWp0RbzEg3U1ezUwEJv2hrOzF2mRM9J1nK0CM4AKK5L7soK+uROJocw10h1l4KrOCNA+NAeFuyWarB4nJaFeyCRx"
        "nlrjNhgnzhSfaRo8z6kVo3R6HWI8w8qJNYJZcT26HUIwEf1HlH7+c0lGrFKgtuKtWXoM22OhuJ4YtfwC7U2fBW9d"
        "dHf1z30PO7lH0WnG+d10dDZ4WyvtTri0NO1kUDaoMqDnF9WgKstZTDj2ln1UlLuVJHl6DquYlpZ75xWm5E/FOpzZ"
        "smoEWwckbAUQarvX5dhTHwAAAAAAAACjggExMIIBLTAJBgNVHRMEAjAAMB0GA1UdDgQWBBSArBVmf+N2Yj/HjwjP"
        "Uuw9GPiD5jAfBgNVHSMEGDAWgBQoanfbQws6OU+6nuOqTsSZkDEfGDAOBgNVHQ8BAf8EBAMCBaAwHQYDVR0lBBYw"
        "FAYIKwYBBQUHAwIGCCsGAQUFBwMEMBoGA1UdIAQTMBEwDwYNKoF6AYFVAQcCAQECATA9BgNVHR8ENjA0MDKgMKAu"
        "hixodHRwOi8vMTI3LjAuMC4xOjgwODgvY3JsL0FDSS1GTy1QUC1URVNULmNybDAPBggqgXoBRwECBQQDBAGAMA8G"
        "CCqBegFHAQICBAMCAQQwIwYIKoF6AUcBAgMEFxMVODAyNTAwMDAwMS8yOTAwMDAwMDEyMA8GCCqBegFHAQIHBAMC"
        "AQowDQYJKoZIhvcNAQELBQADggEBABJN/l6P/LVIF101UnV+glnjXHGfJIP3pmCg7+5n6Q7TEYhFR/r75fA5obS2"
        "IF+bB3ajvAwNodQUp9YybsEKpYrxe02xWi/XBkL2Et/2jNiphIw7x8JskDjKcPRitXW8p3PY+WDbxhkAyzarIie/"
        "eK7hDKzUt7GOBEvnPErK2RSyGOFhiDR+osqqiXgflVT2esWlx05pm9Xz4MUx8Hf+ZifuTxl8IzahbirSSb+SaroC"
        "k5a2eUXD24mHPZNbiDrGEZTaxJ5dSRU8XeAbEH7khJ4Uxs38XxXy/XaatyxLEbonVliqx7+H1Q4Ltny14MdNHJhi"
        "j3sti6quEe4aaEHHUxM=",
    ),
    Regression(
        "card-certificate",
        "ValueError mie/trust/identity.py:95 error parsing asn1 value: ParseError { kind: Invalid",
        "ADCCBJMwggN7oAMCAQICFAFj6dmIWWYBdfWbe+bxaO/ipAdEMA0GCSqGSIb3DQEBCwUAMH8xCzAJBgNVBAYTAkZS"
        "MRMwEQYDVQQKDApBU0lQ//9BTlRFMRcwFQYDVQQLDA4wMDAyIDE4NzUxMjc1MTEXMBUGA1UECwwOSUdDLVNBTlRF"
        "IFRFU1QxKTAnBgNVBAMMIFRFU1QgQUMgSUdDLVNBTlRFIEZPUlQgUEVSU09OTkVTMB4XDTI2MTIwMTA5MjI1MVoX"
        "DTI5MTEzMDA5MjI1MVowUzELMAkGA1UEBhMCRlIxETAPBgNVBAwMCE3DqWRlY2luMTEwCwYDVQQqDARKRUFOMA0G"
        "A1UEBAwGRFVQT05UMBMGA1UEAwwMODEwMTAwMDk5ODc3MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA"
        "vlfQhOtzA1Fy+wxywhhnsYX0eDQjzYU8xVXjxNnNpQiNBuUm0Mv+1xafgk5VnyZBFYaidBn2vLuzodCst+0oyypq"
        "H0keqel7fbjWWS4Nvd/YQzCTwGGpd/oZd5xmE/MIqSB6v5/DlJbO5VzqG6bF7E/ixpjZj/E+VETf9Kh1fzB59+Db"
        "NOkooWQ69dR662rdzdiADGN9fTqBPLyUOFVWXTI/DmOtF7ydh/UUXZm8QNsAQLAxVoMFcouWvyLAKQ4B59m+Dw/O"
        "1VjievWYAKc7g/82hFYdxK9rcIzDfZ7i2ddwklxoP4DkbYsNNI7jz+wJAYkM33Sa0EvxZSgnlnZKMwIDAQABo4IB"
        "MTCCAS0wCQYDVR0TBAIwADAdBgNVHQ4EFgQUeEgGwIvcrEEsoTAeinCpnE4XqdcwHwYDVR0jBBgwFoAUKGp320ML"
        "OjlPup7jqk7EmZAxHxgwDgYDVR0PAQH/BAQDAgWgMB0GA1UdJQQWMBQGCCsGAQUFBwMCBggrBgEFBQcDBDAaBgNV"
        "HSAEEzARMA8GDSqBegGBVQEHAgEBAgEwPQYDVR0fBDYwNDAyoDCgLoYsaHR0cDovLzEyNy4wLjAuMTo4MDg4L2Ny"
        "bC9BQ0ktRk8tUFAtVEVTVC5jcmwwDwYIKoF6/7cBAgUEAwQBgDAPBggqgXoBRwECAgQDAgEAMCMGCCqBegFHAQID"
        "BBcTFTgwMjUwMDAwMDEvMjgwMDAwMDAxMTAPBggqgXoBRwECBwQDAgEKMA0GCSqGSIb3DQEBCwUAA4IBAQBjc1qI"
        "WIl+ey5zctcwXIssGgQ2AKp/hxcpD77LAbSPNQUAX+LZs7rfxp6bt8UeuHtUx0ZwjlvDJK9zi5cyXhQZrVoATENF"
        "boKiw4ag6u7IZuK2+7CuYKnTvOb1vk+x8yoQ69TCMGrwD+G6smvuhNJ3xiCpI/GzTekqsLDZHQRhht4u2qc30WTQ"
        "PCxQbCip0HLrGZ4yKX52QLv2pyoLWTKjcEyxVEmDa0/T0awEQMYQBlvyks7X46v4rVa0OE5iu7jSfrEiW9VeU7ws"
        "XSpxd1tlUBQK1KAi1tyPXKluLbUGF3+zHmIrZo3jcF2ozkdtbdQ8kPqPYYlRgX1gCoCIgbHV",
    ),
    Regression(
        "card-certificate",
        "ValueError mie/trust/verify.py:538 error parsing asn1 value: ParseError { kind: InvalidV",
        "ATCCBJMwggN7oAMCAQICFFOmzRXOhJIuaziabDm+co44E1xvMA0GCSqGSIb3DQEBCwUAMH8xCzAJBgNVBAYTAkZS"
        "MRMwEQYDVQQKDApBU0lQLVNBTlRFMRcwFQYDVQQLDA4wMDAyIDE4NzUxMjc1MTEXMBUGA1UECwwOS0dDLVNBTtRF"
        "IFRFU1QxKTAnBgNVBAMMIFRFU1QgQUMgSUdDLVNBTlRFIEZPUlQgUEVSU09OTkVTMB4XDTI2MTIwMTA5MjI1MVoX"
        "DTI5MTEzMDA5MjI1MVowUzELMAkGA1UEBhMCRlIxETAPBgNVBAwMCE3DqWRlY2luMTEwCwYDVQQqDARKRUFOMA0G"
        "A1UEBAwGRFVQT05UMBMGA1UEAwwMODEwMTAwMDk5ODc3MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA"
        "3MYxdyGvg7SJW4SUepLQT3Yj+qmIdOqPLVoxXXrZTRrUnUHmDAfRurMbhX604jKyjan1yh5hbBvivQBppLcM0ow9"
        "k/iVUCAisGkJAQOMyV4B8t78/RA39ktHF4dFvcQVfhN1jIRCd8PafbUrxLu+GM9RXMl3CIPvMXwgckv6A8WmPOvW"
        "Y/WwzcL9EfEHlUJgbesI/Ohmfe3R1XZt+tYPWylEbYJR8LLbRZGFapyDuGG2dldbdPys9+1bQ0mpS5YKzW+YLwK+"
        "M5gagyI4wzmFNBXfY9kEqSgzvXD0dStBMT6BoW/Y4cZrXtEbqTSnQYa0i7Q9Zm8DRobDYgYWPwc6OQIDAQABo4IB"
        "MTCCAS0wCQYDVR0TBAIwADAdBgNVHQ4EFgQULpPHQ5q+tIcIo8A9ieK0Z0VzvAAwHwYDVR0jBBgwFoAUKGp320ML"
        "OjlPup7jqk7EmZAxHxgwDgYDVR0PAQH/BAQDAgWgMB0GA1UdJQQWMBQGCCsGAQUFBwMCBggrBgEFBQcDBDAaBgNV"
        "HSAEEzARMA8GDSqBegGBVQEHAgEBAgEwPQYDVR0fBDYwNDAyoDCgLoYsaHR0cDovLzEyNy4wLjAuMTo4MDg4L2Ny"
        "bC9BQ0ktRk8tUFAtVEVTVC5jcmwwDwYIKoF6AUcBAgUEAwQBgDAPBggqgXoBRwECAgQDAgEAMCMGCCqBegFHAQID"
        "BBcTFTgwMjUwMDAwMDEvMjkwMDAwMDAxMTAPBggqgXoBRwECBwQDAgEKMA0GCSqGSIb3DQEBCwUAA4IBAQBAkWDe"
        "9/zPAX1lz70iYNDZWXEOpvpD8zG6xuxa/1SFcwpiDnK45rlievalP1bQcNlWLW01ZIbGspp3Qy4qFA+SMHxQjSnD"
        "vUGuFwKjeAYFTbqiA18vGympM+s5yKBBYonDI4MSF2GVEWFR+4JVlK8hEFi6zrLSidHqgRBcCQ3DcoAW7ZDFNeI7"
        "ulPktaH7Mtm4oOSVkA4uKJKFWK1EVF0w0EUPAh+zQiDd+UxJ7SRwsCe6VePcKI8huARoz3+kAQ7GNwUWUFbbxO+c"
        "PdsoWeRvECRCMub/+xQpYtbSmEMVpewst3s8hneFOTWATJ2kBGm6Sxbb201z6Fn0QrJMlYxm",
    ),
    Regression(
        "card-certificate",
        "ValueError mie/trust/identity.py:77 error parsing asn1 value: ParseError { kind: Invalid",
        "AzCCBK0wggOVoAMCAQICFG/UkYW6APVZEkCpbYxy1bwQjbX0MA0GCSqGSIb3DQEBCwUAMH8xCzAJBgNVBAYTAkZS"
        "MRMwEQYDVQQKDApBU0lQLVNBTlRFMRcwFQYDVQQLDA4wMDAyIDE4NzUxMjc1MTEXMBUGA1UECwwOSUdDLVNBTlRF"
        "IFRFU1QxKTAnBgNVBAMMIFRFU1QgQUMgSUdDLVNBTlRFIEZPUlQgUEVSU09OTkVTMB4XDTI2MTIwMTA5MjI1MloX"
        "DTI5MTEzMDA5MjI1MlowbTELMAkGA1UEBhMCRlIxETAPBgNVBAwMCE3DqWRlY2luMUswDAYDVQQqDAVMVUNJRTAO"
        "BgNVBAQMB7RFUk5BUkQwKwYDVQQDDCQ0ZjBiN2MxZS01ZDJhLTRjOGUtOWEzYi02ZTFmMmQ3YzhiOTAwggEiMA0G"
        "CSqGKIb3DQEBAQUAA4IBDwAwggEKAoIBAQDHoe/kvF5ov8dwgjq3vsNS5XRzWpD3USjseVRnk+nHSALzi9okkpnk"
        "WWp0RbzEg3U1ezUwEJv2hrOzF2mRM9J1nK0CM4AKK5L7soK+uROJocw10h1l4KrOCNA+NAeFuyWarB4nJaFeyCRx"
        "nlrjNhgnzhSfaRo8z6kVo3R6HWI8w8qJNYJZcT26HUIwEf1HlH7+c0lGrFKgtuKtWXoM22OhuJ4YtfwC7U2fBW9d"
        "dHf1z30PO7lH0WnG+d10dDZ4WyvtTri0NO1kUDaoMqDnF9WgKstZTDj2ln1UlLuVJHl6DquYlpZ75xWm5E/FOpzZ"
        "smoEWwckbAUQarvX5dhTKO1HAgMBAAGjggExMIIBLTAJBgNVHRMEAjAAMB0GA1UdDgQWBBSArBVmf+N2Yj/HjwjP"
        "Uuw9GPiD5jAfBgNVHSMEGDAWgBQoanfbQws6OU+6nuOqTsSZkDEfGDAOBgNVHQ8BAf8EBAMCBaAwHQYDVR0lBBYw"
        "FAYIKwYBBQUHAwIGCCsGAQUFBwMEMBoGA1UdIAQTMBEwDwYNKoF6AYFVAQcCAQECATA9BgNVHR8ENjA0MDKgMKAu"
        "hixodHRwOi8vMTI3LjAuMC4xOjgwODgvY3JsL0FDSS1GTy1QUC1URVNULmNybDAPBggqgXoBRwECBQQDBAGAMA8G"
        "CCqBegFHAQICBAMCAQQwIwYIKoF6AUcBAgMEFxMVODAyNTAwMDAwMS8yOTAwMDAwMDEyMA8GCCqBegFHAQIHBAMC"
        "AQowDQYJKoZIhvcNAQELBQADggEBABJN/l6P/LVIF101UnV+glnjXHGfJIP3pmCg7+5n6Q7TEYhFR/r75fA5obS2"
        "IF+bB3ajvAwNodQUp9YybsEKpYrxe02xWi/XBkL2Et/2jNiphIw7x8JskDjKcPRitXW8p3PY+WDbxhkAyzarIie/"
        "eK7hDKzUt7GOBEvnPErK2RSyGOFhiDR+osqqiXgflVT2esWlx05pm9Xz4MUx8Hf+ZifuTxl8IzahbirSSb+SaroC"
        "k5a2eUXD24mHPZNbiDrGEZTaxJ5dSRU8XeAbEH7khJ4Uxs38XxXy/XaatyxLEbonVliqx7+H1Q4Ltny14MdNHJhi"
        "j3sti6quEe4aaEHHUxM=",
    ),
    Regression(
        "card-certificate",
        "UnsupportedAlgorithm mie/auth.py:235 Unknown key type: 1.2.4936.113549.1.1.1",
        "AjCCBN0wggPFoAMCAQICFAfJRnzrE6eHRj0tdthpH+IKqRMzMA0GCSqGSIb3DQEBCwUAMIGDMQswCQYDVQQGEwJG"
        "UjETMBEGA1UECgwKQVNJUC1TQU5URTEXMBUGA1UECwwOMDAwMiAxODc1MTI3NTExFzAVBgNVBAsMDklHQy1TQU5U"
        "RSBURVNUMS0wKwYDVQQDDCRURVNUIEFDIElHQy1TQU5URSBTVEFOREFSRCBQRVJTT05ORVMwHhcNMjYxMjAxMDky"
        "MjUyWhcNMjkxMTMwMDkyMjUyWjCBqDELMAkGA1UEBhMCRlIxHDAaBgNVBAoME0NIIERFIERFTU9OU1RSQVRJT04x"
        "EzARBgNVBAsMCjE3NjAwMjE4MzIxKjAoBgNVBAwMIUNhcnRlIGRlIHNlcnZpY2Ugc2FudMOpIG91IHNvY2lhbDE6"
        "MAwGA1UEKgwFTUFSSUUwDQYDVQQEDAZNQVJUSU4wGwYDVQQDDBQzNzYwMDIxODMyLzAwMDAwMDAxODCCASIwDQYJ"
        "KqZIhvcNAQEBBQADggEPADCCAQoCggEBAL39/MsRCldQO+CYtLCVHyMEub9bN5PK6szcB7Agur2kiqBOU8a7fpHF"
        "Alauh6VVtY8E8U1gxKGcZPKMhrPDDP/o5VB5OBCG/1TzGbNIdFLmz3KqLYmDVXMLSyk7RpgT7WCSCQ0q1LqnU6qM"
        "gjGnfBsdnqynigD2m3ZPwdTGev30ArZkoGI+MIqClD6O4lY4jn3fY88TZtijbzXD8VW/CEAOP7/qIzjnUJQMLJQ5"
        "Mm2ZQFq1ZYwumT8fcVKwxQEqP5faYFOYkzjH2acpmmEdcRMdkCCnPYZmXjQ9lYvWL4rYAm3K0YqCEsHR1TneHQdF"
        "/jnFIPLS61I7EnnLyfWIC3ECAwEAAaOCASAwggEcMAkGA1UdEwQCMAAwHQYDVR0OBBYEFMqcKUNzs9hGVoGSb/W/"
        "d+SUkvWlMB8GA1UdIwQYMBaAFDbjQ5YilAfAUab8MWuJiilav8/RMA4GA1UdDwEB/wQEAwIFoDAdBgNVHSUEFjAU"
        "BggrBgEFBQcDAgYIKwYBBQUHAwQwGgYDVR0gBBMwETAPBg0qgXoBgVUBBwMBAQIBMD0GA1UdHwQ2MDQwMqAwoC6G"
        "LGh0dHA6Ly8xMjcuMC4wLjE6ODA4OC9jcmAvQUNJLVNULVBQLVRFU1QuY3JsMA8GCCqBegFHAQIFBAMEAYAwDwYI"
        "KoF6AUcBAgIEAwIBAjAjBggqgXoBRwECAwQXExU4MDI1MDA4MDAxLzI4MDAwMDAwMTMwDQYJKoZIhvcNAQELBQAD"
        "ggEBAEeaK3Ds8/nNA2RU+UNTYaqRWhiyy4s74hq6xirbbifm1OlsOjwgEjFkOxuE99NW0Wxj/CBBP9ZlTv9/fapY"
        "FPncVhjDlYVGItrtcmbCjS5bXH2VTpYPbUPo/2m28uUxXpCFkKC6bmAPDowd3wItNXtFaLfA6O2QElThtlR9y3a6"
        "lF8ASEtv8gNfhAosBLNfKrwXhWtFtcJQRQ0RhIHYX/4H6PjzuRpNONVDfdvi0cTkOm0WoRbSF0K19padQaRGBT0K"
        "u4lgFvZFQlZFcJ1ektK4EQOJnJB5IpB3+NYFjaxmnN+/D8iv0byI3mLNHDI7vNNZ44UbYxF9WS5tjgp2/kc=",
    ),
    Regression(
        "crl-cache",
        "ValueError mie/trust/crl.py:80 error parsing asn1 value: ParseError { kind: InvalidValue",
        "MIIB+TCB4gIBATANBgkqhkiG9w0BAQsFADB8MQswCQYDVQQGEwJGUjETMBEGA1UECgwKQVNJ0C1TQU5URTEXMBUG"
        "A1UECwwOMDAwMiAxODc1MTI3NTExFzAVBgNVBAsMDklHQy1TQU5URSBURVNUMSYwJAYDVQQDDB1URVNUIEFDIFJB"
        "Q0lORSBJR0MtU0FOVEUgRk9SVBcNMjYxMjAxMDgyNzUxWhcNMjYxMjMxMDgyNzUxWqAyMDAwHwYDVR0jBBgwFoAU"
        "NYL0bMYG/zl0xvwhxXs7wjKvFyowDQYDVR0UBAYCBGsOhQcwDQYJKoZIhvcNAQELBQADggEBADZwN6wvsKAaK56H"
        "F6C5JRAgEUIY41IGU9k5XMTs1ubyXNSv8ICwhVsxTVZjSZY64fnhhlviB/b72rY0zJ4+tDqulR1QfM4gF1PrJpho"
        "yPT76aXBBGKrye3DM5k0QBb0S97nQqVJgC51Tb9QY2x7gTZkuiv4ue/cqMM/udjtV59SM5wtMNVU8J8YrL1YPhGM"
        "9qIoebOT0uiEs1REUuCUQfk2TKf//////////4TFWKC2WzfVWFi+43bdLxKHg67VG7SUwI2loZaztEMHJM1Wal0d"
        "p43Tf1IM57qy0uHYFp+AP0omAUPDjoGIHZAwdvIJl7gfJqEjU7dZ9MHFL82SXcE=",
    ),
    Regression(
        "crl-cache",
        "InvalidVersion mie/trust/parse.py:169 3 is not a valid CRL version",
        "MIIB+TCB4gIBAzANBgkqhkiG9w0BAQsFADB8MQswCQYDVQQGEwJGUjETMBEGA1UECgwKQVNJUC1TQU5URTEXMBUG"
        "A1UECwwOMDAwMiAxODc1MTI3NTExFzAVBgNVBAsMDklHQy1TQU5URSBURVNUMSYwJAYDVQQDDB1URVNUIEFDIFJB"
        "Q0lORSBJR0MtU0FOVEUgRk9SVBcNMjYxMjAxMDgyNzUxWhcNMjYxMjMxMDgyNzUxWqAyMDAwHwYDVR0jBBgwFoAU"
        "NYL0bMYG/zl0xvwhxXs7wjKvFyowDQYDVR0UBAYCBGsOhQcwDQYJKoZIhvcNAQELBQADggEBADZwN6wvsKAaK56H"
        "F6C5JRAgEUIY41IGU9k5XMTs1ubyXNSv8ICwhVsxTVZjSZY64fnhhlviB/b72rY0zJ4+tDqulR1QfM4gF1PrJpho"
        "yPT76aXBBGKrye3DM5k0QBb0S97nQqVJgC51Tb9QY2x7gTZkuiv4ue/cqMM/udjtV59SM5wtMNVU8J8YrL1YPhGM"
        "9qIoebOT0uiEs1REUuCUQfk2TKd+f91zjcsj7oTFWKC2WzfVWFi+43bdLxKHg67VG7SUwI2loZaztEMHJM1Wal0d"
        "p43Tf1IM57qy0uHYFp+AP0omAUPDjoGIHZAwdvIJl7gfJqEjU7dZ9MHFL82SXcE=",
    ),
    Regression(
        "crl-cache",
        "ValueError mie/trust/crl.py:89 error parsing asn1 value: ParseError { kind: UnexpectedTa",
        "MIIB+TCB4gIBATANBgkqhkiG9w0BAQsFADB8MQswCQYDVQQGEwJGUjETMBEGA1UECgwKQVNJUC1TQU5URTEXMBUG"
        "A1UECwwOMDAwMiAxODc1MTI3NTExFzAVBgNVBAsMDklHQy1TQU5URSBURVNUMSYwJAYDVQQDDB1URVNUIEFDIFJB"
        "Q0lORSBJR0MtU0FOVEUgRk9SVBcNMjYxMjAxMDgyNzUxWhcNMjYxMjMxMDgyNzUxWqAyMDAwHwYDVR0jBBgyFoAU"
        "NYL0bMYG/zl0xvwhxXs7wjKvFyowDQYDVR0UBAYCBGsOhQcwDQYJKoZIhvcNAQELBQADggEBADZwN6wvsKAaK56H"
        "F6C5JRAgEUIY41IGU9k5XMTs1ubyXNSv8ICwhVsxTVZjSZY64fnhhlviB/b72rY0zJ4+tDqulR1QfM4gF1PrJpho"
        "yPT76aXBBGKrye3DM5k0QBb0S97nQqVJgC51Tb9QY2x7gTZkuiv4ue/cqMM/udjtV59SM5wtMNVU8J8YrL1YPhGM"
        "9qIoebOT0uiEs1REUuCUQfk2TKd+f91zjcsj7oTFWKC2WzfVWFi+43bdLxKHg67VG7SUwI2loZaztEMHJM1Wal0d"
        "p43Tf1IM57qy0uHYFp+AP0omAUPDjoGIHZAwdvIJl7gfJqEjU7dZ9MHFL82SXcE=",
    ),
    Regression(
        "crl-cache",
        "TypeError mie/trust/crl.py:80 oid must be X500_UNIQUE_IDENTIFIER for BitString type.",
        "MIIB+TCB4gIBATANBgkqhkiG9w0BAQsFADB8MQswCQYDVQQGEwJGUjETMBEGA1UECgwKQVNJUC1TQU5URTEXMBUG"
        "A1UECwwOMDAwMiAxODc1MTI3NTExFzAVBgNVBAsDDklHQy1TQU5URSBURVNUMSYwJAYDVQQDDB1URVNUIEFDIFJB"
        "Q0lORSBJR0MtU0FOVEUgRk9SVBcNMjYxMjAxMDgyNzUxWhcNMjYxMjMxMDgyNzUxWqAyMDAwHwYDVR0jBBgyFoAU"
        "NYL0bMYG/zl0xvwhxXs7wjKvFyowDQYDVR0UBAYCBGsOhQcwDQYJKoZIhvcNAQELBQADggEBADZwN6wvsKAaK56H"
        "F6C5JRAgEUIY41IGU9k5XMTs1ubyXNSv8ICwhVsxTVZjSZY64fnhhlviB/b72rY0zJ4+tDqulR1QfM4gF1PrJpho"
        "yPT76aXBBGKrye3DM5k0QBb0S97nQqVJgC51Tb9QY2x7gTZkuiv4ue/cqMM/udjtV59SM5wtMNVU8J8YrL1YPhGM"
        "9qIoebOT0uiEs1REUuCUQfk2TKd+f91zjcsj7oTFWKC2WzfVWFi+43bdLxKHg67VG7SUwI2loZaztEMHJM1Wal0d"
        "p43Tf1IM57qy0uHYFp+AP0omAUPDjoGIHZAwdvIJl7gfJqEjU7dZ9MHFL82SXcE=",
    ),
    Regression(
        "ocsp",
        "ValueError mie/trust/ocsp.py:159 error parsing asn1 value: ParseError { kind: InvalidVal",
        "MIICRAoBAKCCAj0wggI5BgkrBgEFBQcwAQEEggIqMIICJjCCAQ6hgYEwfzELMAkGA1UEBhMCRlIxEzARBgNVBAoM"
        "CkFTSVAtU0FOVEUxFzAVBgNVBAsMDjAwMDIgMTg3NTEyNzUxMRcwFQYDVQQLDA5JR0MtU0FOVEUgVEVTVDEpMCcG"
        "A1UEAwwgVEVTVCBBQyDJR0MtU0FOVEUgRk9SVCBQRVJTT05ORVMYDzIwMjYxMjAxMDkyNzUzWjB3MHUwTTAJBgUr"
        "DgMCGgUABBTbSgMB/6yTsj95Fr4tqN0pXDWtsQQUKGp320MLOjlPup7jqk7EmZAxHxgCFAFj6dmIWWYBdfWbe+bx"
        "aO/ipAdEgAAYDzIwMjYxMjAxMDkyNjUzWqARGA8yMDI2MTIwMjA5Mjc1M1owDQYJKoZIhvcNAQELBQADggEBADgP"
        "m03FPfHw9XekPgfii/tzDhYZSFUZ5lwbpw1w1uZpaX1qp0WfLFPsvXFtMd7/VZYmWePvkAVoA6EwENuysA7+c26+"
        "Xy0Fr51HeUWJn4x6IhP52Y+C2PSHbqHaCpOw8s2YM4bjMeRHECGAKPFZmlaK1ZvzR8BKFYhex8QmcZUxapohZxNv"
        "Bm3OR51vuk6P3jaxElzBeqm0nPNDAyQF1PMLZbp2gAvwpMBKfla0n/0DW1jw2HjSeP0opElRm/Ln6GEiDuWuqkxy"
        "2L0KrUoo+hkL2voEqYjK5gOgxzRCuNr9mmdFwEAX8HqoeW2r7ssZuz8PpyiR4iX8v1U2pl6prbQ=",
    ),
    Regression(
        "repeated",
        "RecursionError mie/transport/replay.py:183 maximum recursion depth exceeded while decodi",
        "//9b",
    ),
    Regression(
        "session-cps3",
        "TypeError mie/trust/identity.py:77 oid must be X500_UNIQUE_IDENTIFIER for BitString type",
        "AAKQAAAOWgqAJQAAASgAAAATkAAAAmEVABdiE4ACABiCAQGDAlAxigEFjAMD/wCQAAAaoAYwBAQCRAKkBjAEBAJE"
        "A6gGMAQEAkQBkAAAAmEVABdiE4ACAFyCAQGDAkQDigEFjAMD/wCQAABeMCwwDgwMQ1BTX0NFUlRfU0lHMBAEDugo"
        "vQgPgCUAAAH/ABABoQgwBjAEBALAATAsMA4MDENQU19DRVJUX0FVVDAQBA7oKL0ID4AlAAAB/wAQAqEIMAYwBAQC"
        "wAKQAAACYRUAF2ITgAIE4YIBAYMCwAKKAQWMAwP/AJAAAOkwggTdMIIDxaADAgECAhQHyUZ86xOnh0Y9LXbYaR/i"
        "CqkTMzANBgkqhkiG9w0BAQsFADCBgzELMAkGA1UEBhMCRlIxEzARBgNVBAoMCkFTSVAtU0FOVEUxFzAVBgNVBAsM"
        "DjAwMDIgMTg3NTEyNzUxMRcwFQYDVQQLDA5JR0MtU0FOVEUgVEVTVDEtMCsGA1UEAwwkVEVTVCBBQyBJR0MtU0FO"
        "VEUgU1RBTkRBUkQgUEVSU09OTkVTMB4XDTI3MTIwMTA5MjI1MloXDTI5MTEzMDA5MjI1MlowgagxCzAJBgNVBAYT"
        "AkaQAADpUjEcMBoGA1UECgMTQ0ggREUgREVNT05TVFJBVElPTjETMBEGA1UECwwKMTc2MDAyMTgzMjEqMCgGA1UE"
        "DAwhQ2FydGUgZGUgc2VydmljZSBzYW50w6kgb3Ugc29jaWFsMTowDAYDVQQqDAVNQVJJRTANBgNVBAQMBk1BUlRJ"
        "TjAbBgNVBAMMFDM3NjAwMjE4MzIvMDAwMDAwMDE4MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAvf38"
        "yxEKV1A74Ji0sJUfIwS5v1s4k8rqzNwHsCC6vaSKoE5Txrt+kcUCkAAA6Vauh6VVtY8E8U1gxKGcZPKMhrPDDP/o"
        "5VB5OBCG/1TzGbNIdFLmz3KqLYmDVXMLSyk7RpgT7WCSCQ0q1LqnU6qMgjGnfBsdnqynigD2m3ZPwdTGev30ArZk"
        "oGI+MIqClD6O4lY4jn3fY88TZtijbzXD8VW/CEAOP7/qIzjnUJQMLJQ5Mm2ZQFq1ZYwumT8fcVKwxQEqP5faYFOY"
        "kzjH2acpmmEdcRMdkCCnPYZmXjQ9lYvWL4rYAm3K0YqCEsHR1TneHQdF/jnFIPLS61I7EnnLyfWIC3ECAwEAAaOC"
        "ASAwggEcMAkGA5AAAOlVHRMEAjAAMB0GA1UdDgQWBBTKnClDc7PYRlaBkm/1v3fklJL1pTAfBgNVHSMEGDAWgBQ2"
        "40OWIpQHwFGm/DFriYopWr/P0TAOBgNVHQ8BAf8EBAMCBaAwHQYDVR0lBBYwFAYIKwYBBQUHAwIGCCsGAQUFBwME"
        "MBoGA1UdIAQTMBEwDwYNKoF6AYFVAQcDAQECATA9BgNVHR8ENjA0MDKgMKAuhixodHRwOi8vMTI3LjAuMC4xOjgw"
        "ODgvY3JsL0FDSS1TVC1QUC1URVNULmNybDAPBggqgXoBRwECBQQDBAGAMA8GCCqQAADpgXoBRwECAgQDAgECMCMG"
        "CCqBegFHAQIDBBcTFTgwMjUwMDAwMDEvMjgwMDAwMDAxMzANBgkqhkiG9w0BAQsFAAOCAQEAR5orcOzz+c0DZFT5"
        "Q1NhqpFaGLLLizviGrrGKttuJ+bU6Ww6PCASMWQ7G4T301bRbGP8IEE/1mVO/399qlgU+dxWGMOVhUYi2u1yZsKN"
        "LltcfZVOlg9tQ+j/abby5TFekIWQoLpuYA8OjB3fAi01e0Vot8Do7ZASVOG2VH3LdrqUXwBIS2/yA1+ECiwEs18q"
        "vBeFa0W1wlBFDRGEgdhf/gfokAAAYPjzuRpNONVDfdvi0cTkOm0WoRbSF0K19padQaRGBT0Ku4lgFvZFQlZFcJ1e"
        "ktK4EQOJnJB5IpB3+NYFjaxmnN+/D8iv0byI3mLNHDI7vNNZ44UbYxF9WS5tjgp2/keQAA==",
    ),
    Regression(
        "repeated",
        "hang (libFuzzer timeout): 'BEGIN X509 CRL' lines repeated, quadratic PEM scan",
        "//8tLS0tLUJFR0lOIFg1MDkgQ1JMLS0tLS0NCg==",
    ),
    # Command chaining without a bound: the emulated card raised instead of answering 6700.
    Regression(
        "emulator-cps3",
        "ApduFormatError raised by the card: 265 chained 255-byte VERIFY (item 8, before a13e015)",
        "oQEEECAAAf8AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
        "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
        "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
        "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
    ),
    Regression(
        "emulator-demo",
        "ApduFormatError raised by the card: 265 chained 255-byte VERIFY (item 8, before a13e015)",
        "oQEEECAAAf8AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
        "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
        "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
        "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
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


def test_rewritten_ef_sn_breaks_no_login(fuzz_context: Context) -> None:
    """A recorded CPS3 login whose EF.SN answer names another card (issue 7 item 7): before the
    fix it gave a valid result with the rewritten serial, which the session oracle rejects."""
    serial = bytes.fromhex(SERIALS["cps3"])
    answers = []
    for command, response in fuzz_context.record_session("cps3"):
        if command[:4] == bytes.fromhex("00b09c00"):
            assert serial in response
            response = response.replace(serial, bytes.fromhex("2811111111"))
        answers.append(response)
    finding = check(_prepared("session-cps3", fuzz_context), records(answers))
    assert finding is None, str(finding)


def test_ocsp_answer_with_unknown_signature_algorithm(fuzz_context: Context) -> None:
    """An OCSP answer of this run's CA whose signatureAlgorithm is an unknown OID: before 42d37fc
    ``ocsp_status`` raised ``UnsupportedAlgorithm`` (item 10)."""
    good = next(s for s in TARGETS["ocsp"].seeds(fuzz_context) if len(s) > 100)
    sha256_rsa = bytes.fromhex("06092a864886f70d01010b")
    unknown = bytes.fromhex("06092a864886f70d010109")
    position = good.rindex(sha256_rsa)
    data = good[:position] + unknown + good[position + len(sha256_rsa) :]
    finding = check(_prepared("ocsp", fuzz_context), data)
    assert finding is None, str(finding)
