"""Names of photo sets and of their classes: cleaned for display, checked, and a set's folder
name (slug) made from its display name. Errors are ConfigErrors with ``field="name"`` or
``field="label"``."""

from __future__ import annotations

import re
import unicodedata

from ssd_core.errors import ConfigError

MAX_NAME = 60  # characters of a set's name
MAX_LABEL = 40  # characters of a class name


def _clean_name(name, what: str = "set", limit: int = MAX_NAME) -> str:
    """A display name: stripped, inner whitespace collapsed; ConfigError when unusable."""
    if not isinstance(name, str):
        raise ConfigError(f"The {what} name must be text, got {type(name).__name__}.",
                          field="name")
    if any(unicodedata.category(c) == "Cc" and c not in " \t\n\r" for c in name):
        raise ConfigError(f"The {what} name {name!r} contains control characters; use letters, "
                          "digits and spaces.", field="name")
    clean = " ".join(name.split())
    if not clean:
        raise ConfigError(f"Give the {what} a name: it is empty.", field="name")
    if len(clean) > limit:
        raise ConfigError(f"The {what} name {clean[:20]!r}... is {len(clean)} characters long; "
                          f"use at most {limit}.", field="name")
    return clean


def slugify(name: str) -> str:
    """A folder name for a set: ASCII lower case, digits and dashes ("My Cups!" -> "my-cups");
    "" when the name has no Latin letter or digit."""
    ascii_ = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    return re.sub(r"[^a-z0-9]+", "-", ascii_.lower()).strip("-")[:40].strip("-")


def _slug_for(name: str) -> str:
    slug = slugify(name)
    if slug:
        return slug
    if any(c.isalnum() for c in name):  # letters of another script: a neutral folder name
        return "set"
    raise ConfigError(f"The set name {name!r} has no letters or digits; give it a name such "
                      "as 'my cups'.", field="name")


def _same_name(a: str, b: str) -> bool:
    return a.casefold() == b.casefold()


def _clean_label(label, where: str) -> str:
    if not isinstance(label, str):
        raise ConfigError(f"{where}: the class name must be text, got "
                          f"{type(label).__name__}.", field="label")
    clean = " ".join(label.split())
    if not clean:
        raise ConfigError(f"{where}: the class name is empty; type what the box shows.",
                          field="label")
    if any(unicodedata.category(c) == "Cc" for c in clean):
        raise ConfigError(f"{where}: the class name {label!r} contains control characters.",
                          field="label")
    if len(clean) > MAX_LABEL:
        raise ConfigError(f"{where}: the class name {clean[:20]!r}... is {len(clean)} "
                          f"characters long; use at most {MAX_LABEL}.", field="label")
    return clean
