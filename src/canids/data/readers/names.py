"""Capture names and attack families, from file names alone.

The catalog and the per-attack-type metrics need a capture's name and attack family
before (or without) reading it, and the synthetic generator names its captures the same
way, so these rules are pure string functions with no dependency on any reader.

Names are matched as whole tokens, never as substrings: ``speed-accessory-1`` is a speed
attack recorded in accessory mode, not attack-free traffic because it contains
"accessory"; ``untargeted_payload_fuzzing-1`` is not targeted fuzzing because it contains
"targeted".
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Mapping
from pathlib import Path

#: File name endings stripped to get the capture name (longest first).
CAPTURE_SUFFIXES: tuple[str, ...] = (".csv.gz", ".txt.gz", ".csv", ".parquet", ".txt", ".gz")

#: The family of attack-free traffic.
NORMAL = "normal"

#: Family given to a capture whose name says nothing about an attack but whose frames are
#: labelled as attacks (a capture with labelled attack frames is never ``normal``).
UNNAMED_ATTACK = "unknown"

#: What a family name must look like (catalog overrides are checked against it).
FAMILY_PATTERN = r"^[a-z][a-z0-9_]*$"


def capture_name(path: str | Path) -> str:
    """File name without its capture suffix (``DoS-3.csv.gz`` -> ``DoS-3``)."""
    name = Path(path).name
    lower = name.lower()
    for suffix in CAPTURE_SUFFIXES:
        if lower.endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)]
    return Path(name).stem


#: Spellings of one attack used by different datasets -> the token the rules use.
_SYNONYMS: dict[str, str] = {"fuzzy": "fuzzing", "fuzz": "fuzzing", "flooding": "dos", "flood": "dos", "spoof": "spoofing"}

#: Ordered (tokens, family) rules; the first rule whose tokens all occur in the stem wins.
#: Compound names come before their parts.
_RULES: tuple[tuple[frozenset[str], str], ...] = tuple(
    (frozenset(tokens.split()), family)
    for tokens, family in (
        ("untargeted fuzzing", "untargeted_payload_fuzzing"),
        ("targeted fuzzing", "targeted_payload_fuzzing"),
        ("fuzzing", "fuzzing"),
        ("dos", "dos"),
        ("masquerade untimed", "masquerade_untimed"),
        ("masquerade timed", "masquerade_timed"),
        ("masquerade", "masquerade"),
        ("suppress", "suppress"),
        ("valid systematic", "valid_systematic"),
        ("systematic", "systematic"),
        ("malfunction", "malfunction"),
        ("force neutral", "force_neutral"),
        ("standstill", "standstill"),
        ("double", "double"),
        ("triple", "triple"),
        ("interval", "interval"),
        ("rpm", "rpm"),
        ("speed", "speed"),
        ("gear", "gear"),
        ("spoofing", "spoofing"),
        # attack-free traffic; "accessory" alone is can-train-and-test's attack-free
        # accessory-mode capture, in a compound it only says the vehicle's mode
        ("attack free", NORMAL),
        ("accessory", NORMAL),
        ("normal", NORMAL),
        ("driving", NORMAL),
        ("free", NORMAL),
    )
)


def name_tokens(stem: str) -> list[str]:
    """Lower-case alphabetic tokens of a capture name, synonyms unified (``Fuzzy_dataset`` -> ``fuzzing, dataset``)."""
    return [_SYNONYMS.get(t, t) for t in re.split(r"[^a-z]+", capture_name(stem).lower()) if t]


def attack_type_from_name(stem: str, overrides: Mapping[str, str] | None = None) -> str:
    """Canonical, lower-case attack family of a capture, inferred from its file stem.

    Per-attack-type metrics need one family name across datasets whose files are named
    differently (``DoS-3``, ``DoS_dataset``, ``Flooding_...``). The stem is split into
    alphabetic tokens (digits and separators split), ``fuzzy``/``fuzz`` read as
    ``fuzzing``, ``flooding``/``flood`` as ``dos``, ``spoof`` as ``spoofing``. Then, first
    rule whose tokens all occur wins:

    ==============================  =============================
    tokens                          family
    ==============================  =============================
    ``untargeted`` ``fuzzing``      ``untargeted_payload_fuzzing``
    ``targeted`` ``fuzzing``        ``targeted_payload_fuzzing``
    ``fuzzing``                     ``fuzzing``
    ``dos``                         ``dos``
    ``masquerade`` ``untimed``      ``masquerade_untimed``
    ``masquerade`` ``timed``        ``masquerade_timed``
    ``masquerade``                  ``masquerade``
    ``suppress``                    ``suppress``
    ``valid`` ``systematic``        ``valid_systematic``
    ``systematic``                  ``systematic``
    ``malfunction``                 ``malfunction``
    ``force`` ``neutral``           ``force_neutral``
    ``standstill``, ``double``,
    ``triple``, ``interval``,
    ``rpm``, ``speed``, ``gear``,
    ``spoofing``                    the token itself
    ``attack`` ``free``,
    ``accessory``, ``normal``,
    ``driving``, ``free``           ``normal``
    ==============================  =============================

    Anything else: the stem's first token (``replay-1`` -> ``replay``); a stem with no
    letters at all -> ``"unknown"``.

    ``overrides`` (the catalog's ``attack_families``) maps shell-style patterns on the
    stem (case-insensitive, e.g. ``"masquerade-[12]"``) to a family; the first matching
    pattern wins over the rules.
    """
    name = capture_name(stem)
    for pattern, family in (overrides or {}).items():
        if fnmatch.fnmatchcase(name.lower(), pattern.lower()):
            return family
    tokens = name_tokens(name)
    present = set(tokens)
    for needed, family in _RULES:
        if needed <= present:
            return family
    return tokens[0] if tokens else UNNAMED_ATTACK


def attack_family(stem: str, has_attack_frames: bool, overrides: Mapping[str, str] | None = None) -> str:
    """``attack_type_from_name``, except that a capture with labelled attack frames is never
    ``normal``: its name is wrong about it, so its family is ``"unknown"`` (a catalog
    override names it properly)."""
    family = attack_type_from_name(stem, overrides)
    return UNNAMED_ATTACK if family == NORMAL and has_attack_frames else family
