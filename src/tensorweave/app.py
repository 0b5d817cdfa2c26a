"""``tw.app``: TF1's ``tf.app.run`` and ``tf.app.flags`` (absl underneath).

Example::

    import tensorweave as tw
    tw.flags.DEFINE_integer("steps", 100, "Training steps.")
    FLAGS = tw.flags.FLAGS

    def main(argv):
        print(FLAGS.steps)

    if __name__ == "__main__":
        tw.app.run()          # parses --steps=..., calls main(argv), exits with its result
"""

from __future__ import annotations

import sys

from absl import app as _absl_app
from absl import flags

FLAGS = flags.FLAGS


def _parse_flags_tolerate_undef(argv):
    # TF1 passes flags it does not know through to main's argv instead of failing
    return flags.FLAGS(sys.argv if argv is None else argv, known_only=True)


def run(main=None, argv=None):
    """Parses command-line flags, calls ``main(argv)`` (default: ``__main__.main``) with the
    arguments left over, then ``sys.exit`` with its return value."""
    main = main or sys.modules["__main__"].main
    _absl_app.run(main=main, argv=argv, flags_parser=_parse_flags_tolerate_undef)


__all__ = ["run", "flags", "FLAGS"]
