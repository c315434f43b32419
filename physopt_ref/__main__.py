"""``python -m physopt_ref``: the ``physopt-ref`` command line (:mod:`physopt_ref.cli`)."""

import sys

from physopt_ref.cli import main

if __name__ == "__main__":
    sys.exit(main())
