"""Numbers typed into a text box: "0.2, 0.272" -> [0.2, 0.272], or a ValueError that says
which entry is wrong and what would be valid (the page prefixes what the box is for)."""

from __future__ import annotations

import math


def _bound(lo: float, hi: float, allow_lo: bool) -> str:
    low = f"{'≥' if allow_lo else '>'} {lo:g}"
    return low if math.isinf(hi) else f"{low} and ≤ {hi:g}"


def number_list(text: str, lo: float = 0.0, hi: float = math.inf, *, allow_lo: bool = False,
                max_count: int | None = None, example: str = "0.2, 0.272") -> list[float]:
    """Comma-, semicolon- or space-separated finite numbers in ``(lo, hi]`` (``[lo, hi]`` with
    ``allow_lo``), at most ``max_count`` of them."""
    parts = [p for p in text.replace(";", ",").replace(" ", ",").split(",") if p]
    if not parts:
        raise ValueError(f"give at least one number, e.g. {example}")
    if max_count is not None and len(parts) > max_count:
        raise ValueError(f"at most {max_count} values, got {len(parts)}")
    out = []
    for p in parts:
        try:
            v = float(p)
        except ValueError:
            raise ValueError(f"{p!r} is not a number; use comma-separated numbers such as "
                             f"{example}") from None
        if not (math.isfinite(v) and (v >= lo if allow_lo else v > lo) and v <= hi):
            raise ValueError(f"{p!r} is out of range: use values {_bound(lo, hi, allow_lo)}")
        out.append(v)
    return out
