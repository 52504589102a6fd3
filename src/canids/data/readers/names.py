"""Capture names and attack families, from file names alone.

The catalog and the per-attack-type metrics need a capture's name and attack family
before (or without) reading it, and the synthetic generator names its captures the same
way, so these rules are pure string functions with no dependency on any reader.
"""

from __future__ import annotations

import re
from pathlib import Path

#: File name endings stripped to get the capture name (longest first).
CAPTURE_SUFFIXES: tuple[str, ...] = (".csv.gz", ".txt.gz", ".csv", ".parquet", ".txt", ".gz")


def capture_name(path: str | Path) -> str:
    """File name without its capture suffix (``DoS-3.csv.gz`` -> ``DoS-3``)."""
    name = Path(path).name
    lower = name.lower()
    for suffix in CAPTURE_SUFFIXES:
        if lower.endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)]
    return Path(name).stem


#: Ordered (substring(s), family) rules; the first rule whose substrings all occur wins.
_ATTACK_RULES: tuple[tuple[tuple[str, ...], str], ...] = (
    (("targeted", "fuzz"), "targeted_fuzzing"),
    (("fuzz",), "fuzzing"),
    (("dos",), "dos"),
    (("flood",), "dos"),
    (("rpm",), "spoofing"),
    (("gear",), "spoofing"),
    (("spoof",), "spoofing"),
    (("malfunction",), "malfunction"),
    (("suppress",), "suppress"),
    (("masquerade",), "masquerade"),
    (("systematic",), "systematic"),
    (("attack-free",), "normal"),
    (("attack_free",), "normal"),
    (("accessory",), "normal"),
    (("normal",), "normal"),
    (("driving",), "normal"),
    (("free",), "normal"),
)


def attack_type_from_name(stem: str) -> str:
    """Canonical, lower-case attack family of a capture, inferred from its file stem.

    Per-attack-type metrics need one family name across datasets whose files are named
    differently (``DoS-3``, ``DoS_dataset``, ``Flooding_...``). Rules, first match wins,
    matching is case-insensitive on substrings:

    =========================================  ====================
    stem contains                              family
    =========================================  ====================
    ``targeted`` and ``fuzz``                  ``targeted_fuzzing``
    ``fuzz`` (``fuzzing-kia``, ``Fuzzy_...``)  ``fuzzing``
    ``dos`` or ``flood``                       ``dos``
    ``rpm``, ``gear`` or ``spoof``             ``spoofing``
    ``malfunction``                            ``malfunction``
    ``suppress``                               ``suppress``
    ``masquerade``                             ``masquerade``
    ``systematic``                             ``systematic``
    ``attack-free``, ``attack_free``,
    ``accessory``, ``normal``, ``driving``,
    ``free``                                   ``normal``
    =========================================  ====================

    Anything else: the stem's leading alphabetic token, lower-cased (``force-neutral-1``
    -> ``force``); a stem with no letters at all -> ``"unknown"``.
    """
    lower = capture_name(stem).lower()
    for needles, family in _ATTACK_RULES:
        if all(needle in lower for needle in needles):
            return family
    match = re.search(r"[a-z]+", lower)
    return match.group(0) if match else "unknown"
