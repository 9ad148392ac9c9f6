"""Compare two catalogs: what the expected schema has that the live one lacks, what the live one
has in addition, and what both have with a different definition.

Keys and definitions are compared as ``catalog`` made them; the rules that make equal schemas give
equal keys (server-chosen names, dropped columns) live there, not here.
"""
from __future__ import annotations

from dataclasses import dataclass

from .catalog import Catalog

__all__ = ["Difference", "compare"]

MISSING = "missing"
EXTRA = "extra"
CHANGED = "changed"


@dataclass(frozen=True)
class Difference:
    object: str          # the key, e.g. "column public.machines.hostname"
    kind: str            # "missing" | "extra" | "changed"
    expected: str | None
    actual: str | None

    def __str__(self) -> str:
        if self.kind == MISSING:
            return f"missing {self.object}: expected {self.expected}"
        if self.kind == EXTRA:
            return f"extra {self.object}: {self.actual}"
        return f"changed {self.object}: expected {self.expected}, found {self.actual}"


def compare(expected: Catalog, actual: Catalog) -> list[Difference]:
    """Every difference, sorted by object key; empty when the two catalogs are equal."""
    want, have = expected.objects, actual.objects
    differences = []
    for key in sorted(want.keys() | have.keys()):
        if key not in have:
            differences.append(Difference(key, MISSING, want[key], None))
        elif key not in want:
            differences.append(Difference(key, EXTRA, None, have[key]))
        elif want[key] != have[key]:
            differences.append(Difference(key, CHANGED, want[key], have[key]))
    return differences
