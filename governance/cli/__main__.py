"""``python -m governance.cli``: the ``commons`` command line."""

from governance.cli import main

main()
