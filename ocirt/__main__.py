"""``python -m ocirt``: the same as the ``ocirt`` command."""

from ocirt.cli import main

main()
