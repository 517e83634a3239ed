"""Duplicate member names in a JSON body: which one, and where.

RFC 8259 (4) says names SHOULD be unique and leaves the meaning of a repeated one open:
Python's ``json`` keeps the last value, other parsers the first, so a filter, audit log or
signature check in front can read a different order than the one a service stores. The guard
(:mod:`servicekit.guard`) refuses such a body with 400 naming the member.
"""

from __future__ import annotations

import json
from typing import Any


class _Members(list):  # type: ignore[type-arg]
    """An object's (name, value) pairs in order, duplicates kept."""


def duplicate_member(body: bytes) -> str | None:
    """The path of the first repeated member name (``userId``, ``items.0.price``), or None.

    A body that is not JSON gives None: the route's own parsing answers for it.
    """
    try:
        document = json.loads(body, object_pairs_hook=_Members)
    except (ValueError, RecursionError):
        return None
    return _first_duplicate(document, "")


def _first_duplicate(node: Any, path: str) -> str | None:
    prefix = f"{path}." if path else ""
    if isinstance(node, _Members):
        seen: set[str] = set()
        for name, _ in node:
            if name in seen:
                return prefix + name
            seen.add(name)
        children = ((name, value) for name, value in node)
    elif isinstance(node, list):
        children = ((str(index), value) for index, value in enumerate(node))
    else:
        return None
    for name, value in children:
        found = _first_duplicate(value, prefix + name)
        if found is not None:
            return found
    return None
