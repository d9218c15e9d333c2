"""Download and lay out benchmarks in the CoOp layout, fetch their split files, and verify the counts.

    python tools/prepare_data.py oxford_pets --root ~/data
    python tools/prepare_data.py all --root ~/data --no-download     # only check what is there

Exit status 0 when every requested benchmark is ready, 1 when something is missing (the report says
what, and what to do by hand), 2 on a bad argument.
"""

from __future__ import annotations

import argparse
import logging
import sys

from promptinfo.data import list_datasets
from promptinfo.data.prepare import prepare
from promptinfo.errors import ConfigError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("datasets", nargs="+", help=f"'all' or any of: {', '.join(list_datasets())}")
    parser.add_argument("--root", required=True, help="data root; each benchmark goes to <root>/<its folder>")
    parser.add_argument("--no-download", action="store_true", help="fetch nothing; lay out and verify only")
    parser.add_argument("--keep-downloads", action="store_true", help="keep torchvision's archives")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    keys = list_datasets() if args.datasets == ["all"] else args.datasets
    unknown = [k for k in keys if k not in list_datasets()]
    if unknown:
        print(f"unknown datasets {unknown}; choose from: {', '.join(list_datasets())}", file=sys.stderr)
        return 2
    ready = True
    for key in keys:
        try:
            report = prepare(key, args.root, download=not args.no_download, keep_downloads=args.keep_downloads)
        except ConfigError as e:
            print(str(e), file=sys.stderr)
            return 2
        print(report.format(), flush=True)
        ready &= report.ok
    return 0 if ready else 1


if __name__ == "__main__":
    sys.exit(main())
