"""`python -m promptinfo.train ...`: the same as `promptinfo-train ...`."""

from promptinfo.cli.train import main

if __name__ == "__main__":
    main()
