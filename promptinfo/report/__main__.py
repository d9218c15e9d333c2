"""``python -m promptinfo.report RUNS_DIR ...``: same as the ``promptinfo-report`` command."""

from promptinfo.cli.report import main

if __name__ == "__main__":
    raise SystemExit(main())
