"""Values inside spec strings (``op@k=v``, ``timm:NAME?k=v``) arrive as text; one parser types them."""
from __future__ import annotations


def parse_scalar(text: str) -> bool | int | float | str:
    """``"true"``/``"false"`` -> bool, then int, then float, else the text unchanged."""
    low = text.lower()
    if low in ("true", "false"):
        return low == "true"
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text
