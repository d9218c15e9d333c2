"""The CoOp benchmarks: importing this package registers every one of them."""

from promptinfo.data.benchmarks import (  # noqa: F401  (imported for their registration)
    caltech101,
    dtd,
    eurosat,
    fgvc_aircraft,
    food101,
    imagenet,
    imagenet_shifts,
    imagenet_v2,
    oxford_flowers,
    oxford_pets,
    procedural,
    stanford_cars,
    sun397,
    ucf101,
)
