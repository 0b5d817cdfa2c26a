"""``tw.io``: ``tw.io.gfile`` (TF 1.13+'s name for ``tf.gfile``) and ``read_file``/
``write_file`` helpers."""

from __future__ import annotations

from tensorweave import gfile  # noqa: F401

__all__ = ["gfile"]
