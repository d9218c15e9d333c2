"""``python -m promptinfo.inspect ...``: same as the ``promptinfo-inspect`` command."""

from promptinfo.cli.inspect import main

if __name__ == "__main__":
    raise SystemExit(main())
