"""The benchmarks, one declarative module each: importing this package registers every module in it.

A new benchmark is one module here that calls `register_benchmark(Benchmark(...))`; nothing else lists it.
"""

from promptinfo.discovery import import_submodules

import_submodules(__name__, __path__)
