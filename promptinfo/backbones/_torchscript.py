"""The tensors of a TorchScript archive, read without running any code from it.

`torch.jit.save` writes a zip with `code/` (TorchScript source, run by `torch.jit.load`), `data/<key>` (raw
storage bytes) and `data.pkl`, a pickle of the module tree: every module an object of a `__torch__.*` class
whose attributes are its submodules, parameters and buffers, tensors rebuilt by
`torch._utils._rebuild_tensor_v2` from persistent storage ids. This module unpickles `data.pkl` with an
allow-list of exactly those globals, so nothing else can be called, and flattens the tree into a state dict.
"""

from __future__ import annotations

import collections
import io
import pickle
import zipfile

import torch

_STORAGE_DTYPES = {
    "FloatStorage": torch.float32, "HalfStorage": torch.float16, "BFloat16Storage": torch.bfloat16,
    "DoubleStorage": torch.float64, "LongStorage": torch.int64, "IntStorage": torch.int32,
    "ShortStorage": torch.int16, "CharStorage": torch.int8, "ByteStorage": torch.uint8, "BoolStorage": torch.bool,
}
_ALLOWED = {
    ("torch._utils", "_rebuild_tensor_v2"): torch._utils._rebuild_tensor_v2,
    ("collections", "OrderedDict"): collections.OrderedDict,
}


class UnsupportedArchive(Exception):
    """The archive holds something this reader does not rebuild (it may need `torch.jit.load`)."""


class _Module:
    """A module of the archive: its attributes (submodules, tensors, flags) land in `__dict__`."""


def read_torchscript_tensors(path: str) -> dict[str, torch.Tensor]:
    """`{dotted attribute name: tensor}` of every tensor attribute in the archive's module tree.

    Raises:
        UnsupportedArchive: not a TorchScript zip, or its pickle uses a global outside the allow-list.
    """
    with zipfile.ZipFile(path) as archive:
        pickles = [name for name in archive.namelist() if name.endswith("/data.pkl") and name.count("/") == 1]
        if len(pickles) != 1:
            raise UnsupportedArchive(f"expected one <folder>/data.pkl, found {pickles}")
        prefix = pickles[0].removesuffix("data.pkl")
        root = _Unpickler(io.BytesIO(archive.read(pickles[0])), archive, prefix).load()
    if not isinstance(root, _Module):
        raise UnsupportedArchive(f"data.pkl holds a {type(root).__name__}, not a module")
    return dict(_flatten(root, ""))


class _Unpickler(pickle.Unpickler):
    def __init__(self, file, archive: zipfile.ZipFile, prefix: str) -> None:
        super().__init__(file)
        self.archive, self.prefix = archive, prefix

    def find_class(self, module: str, name: str):
        if module.startswith("__torch__"):
            return _Module
        if module == "torch" and name in _STORAGE_DTYPES:
            return _STORAGE_DTYPES[name]
        if (module, name) in _ALLOWED:
            return _ALLOWED[(module, name)]
        raise UnsupportedArchive(f"data.pkl refers to {module}.{name}")

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"):
            raise UnsupportedArchive(f"unexpected persistent id {pid!r}")
        _, dtype, key, _location, numel = pid
        raw = bytearray(self.archive.read(f"{self.prefix}data/{key}"))
        if len(raw) != numel * dtype.itemsize:
            raise UnsupportedArchive(f"storage {key} holds {len(raw)} bytes, expected {numel} x {dtype}")
        untyped = torch.frombuffer(raw, dtype=torch.uint8).untyped_storage() if raw else torch.UntypedStorage(0)
        return torch.storage.TypedStorage(wrap_storage=untyped, dtype=dtype, _internal=True)


def _flatten(module: _Module, prefix: str):
    for name, value in vars(module).items():
        if isinstance(value, torch.Tensor):
            yield prefix + name, value.detach()
        elif isinstance(value, _Module):
            yield from _flatten(value, f"{prefix}{name}.")
