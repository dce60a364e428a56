"""Kubernetes quantities ("200Gi", "16Gi", "500M", "250m"): one exact parser for the whole course.

Used by the storage chapter (claim sizes), the deployment chapter (memory limits,
``/dev/shm``), the workshop's box check (GPU counts) and the system figure.
Exact (:class:`~fractions.Fraction`), as the API server compares them; see
https://kubernetes.io/docs/reference/kubernetes-api/common-definitions/quantity/
and ``k8s.io/apimachinery/pkg/api/resource/quantity.go``.
"""
from __future__ import annotations

import re
from fractions import Fraction

from llmserve.core.errors import InputError

GIB = 2**30


_BINARY = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}
_DECIMAL = {"n": Fraction(1, 10**9), "u": Fraction(1, 10**6), "m": Fraction(1, 1000), "": 1,
            "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "P": 10**15, "E": 10**18}
_QUANTITY = re.compile(r"^([+-]?)(\d+(?:\.\d*)?|\.\d+)(?:([eE][+-]?\d+)|([A-Za-z]*))$")
# Common wrong spellings and what they were probably meant to be.
_SUFFIX_HINTS = {"gb": "G (10^9) or Gi (2^30)", "gib": "Gi", "gi": "Gi", "mb": "M or Mi", "mib": "Mi",
                 "mi": "Mi", "tb": "T or Ti", "tib": "Ti", "ti": "Ti", "kb": "k or Ki", "kib": "Ki",
                 "b": "no suffix (plain bytes)", "g": "G or Gi", "t": "T or Ti", "K": "k or Ki"}


def parse_quantity(value, what: str = "size") -> Fraction:
    """A Kubernetes storage quantity (``"200Gi"``, ``"1.5Ti"``, ``"500M"``, ``1024``) in bytes.

    Exact (a :class:`~fractions.Fraction`), as the API server compares them.
    Raises :class:`InputError` for negative sizes and unknown suffixes.
    """
    if isinstance(value, bool) or value is None:
        raise InputError(f"The {what} {value!r} is not a quantity.",
                         "Write a size such as 200Gi (binary, 2^30 bytes per Gi) or 200G (decimal).")
    if isinstance(value, (int, float)):
        number = Fraction(value)
        text = repr(value)
    else:
        text = str(value).strip()
        m = _QUANTITY.match(text)
        if not m:
            suffix = re.sub(r"^[+-]?[\d.]+", "", text)
            hint = _SUFFIX_HINTS.get(suffix) or _SUFFIX_HINTS.get(suffix.lower())
            if text and re.match(r"^[+-]?[\d.]", text) and suffix:
                fix = (f"Kubernetes does not know the suffix {suffix!r}" + (f"; use {hint}" if hint else "")
                       + ". Valid: Ki Mi Gi Ti Pi Ei (binary), k M G T P E (decimal), or plain bytes.")
            else:
                fix = "Write a number with an optional suffix, e.g. 200Gi, 1.5Ti, 500M or 1073741824."
            raise InputError(f"The {what} {text!r} is not a Kubernetes quantity.", fix)
        sign, digits, exponent, suffix = m.groups()
        number = Fraction(digits) if not digits.endswith(".") else Fraction(digits[:-1])
        if exponent:
            number *= Fraction(10) ** int(exponent[1:])
        elif suffix:
            if suffix in _BINARY:
                number *= _BINARY[suffix]
            elif suffix in _DECIMAL:
                number *= _DECIMAL[suffix]
            else:
                hint = _SUFFIX_HINTS.get(suffix) or _SUFFIX_HINTS.get(suffix.lower())
                raise InputError(f"The {what} {text!r} has an unknown suffix {suffix!r}.",
                                 (f"Use {hint}. " if hint else "")
                                 + "Valid suffixes: Ki Mi Gi Ti Pi Ei (binary), k M G T P E (decimal), "
                                   "or none for plain bytes.")
        if sign == "-":
            number = -number
    if number < 0:
        raise InputError(f"The {what} {text} is negative.", "A size must be zero or more, e.g. 200Gi or 16Gi.")
    return number


def format_bytes(n: Fraction | int) -> str:
    """Bytes as the shortest exact quantity (``"200Gi"``, ``"200G"``), else in Gi etc. with 2 decimals."""
    n = Fraction(n)
    units = [(s, u) for s, u in _BINARY.items()] + [(s, u) for s, u in _DECIMAL.items() if s and u >= 1000]
    exact = [f"{n // u}{s}" for s, u in units if n >= u and (n / u).denominator == 1]
    if n.denominator == 1:
        exact.append(str(n.numerator))
    if exact:
        return min(exact, key=len)   # binary units come first, so ties go to them
    for suffix in ("Ei", "Pi", "Ti", "Gi", "Mi", "Ki"):
        if n >= _BINARY[suffix]:
            return f"{float(n / _BINARY[suffix]):.2f}{suffix}"
    return f"{float(n):g} bytes"


def quantity_float(value, what: str = "quantity") -> float:
    """The same quantity as a float (memory in bytes, CPU in cores): for arithmetic and display."""
    return float(parse_quantity(value, what))
