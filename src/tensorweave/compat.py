"""``tw.compat``: ``tw.compat.v1`` is tensorweave itself (so ``import tensorweave as tf`` ports
code written against ``tf.compat.v1``), and TF's bytes/text helpers."""

from __future__ import annotations

import tensorweave as v1  # noqa: F401  (tw.compat.v1.placeholder is tw.placeholder)


def as_bytes(bytes_or_text, encoding="utf-8"):
    """``str`` encoded (UTF-8 by default); ``bytes`` unchanged."""
    if isinstance(bytes_or_text, (bytes, bytearray)):
        return bytes(bytes_or_text)
    if isinstance(bytes_or_text, str):
        return bytes_or_text.encode(encoding)
    raise TypeError(f"Expected binary or unicode string, got {bytes_or_text!r}")


def as_text(bytes_or_text, encoding="utf-8"):
    """``bytes`` decoded (UTF-8 by default); ``str`` unchanged."""
    if isinstance(bytes_or_text, str):
        return bytes_or_text
    if isinstance(bytes_or_text, (bytes, bytearray)):
        return bytes(bytes_or_text).decode(encoding)
    raise TypeError(f"Expected binary or unicode string, got {bytes_or_text!r}")


as_str = as_text


def as_str_any(value):
    return as_text(value) if isinstance(value, (bytes, bytearray)) else str(value)


__all__ = ["v1", "as_bytes", "as_text", "as_str", "as_str_any"]
