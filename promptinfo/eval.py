"""`python -m promptinfo.eval ...`: the same as `promptinfo-eval ...`."""

from promptinfo.cli.eval import main

if __name__ == "__main__":
    main()
