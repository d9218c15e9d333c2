"""Reading the MATLAB ``.mat`` annotations of Stanford Cars and Flowers102 (needs scipy, as torchvision does)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from promptinfo.data.errors import SplitFileError


def load_mat(path: Path) -> dict[str, Any]:
    """Variables of a MATLAB v5 file with singleton dimensions squeezed (struct arrays keep field access).

    Raises:
        ImportError: scipy is not installed (it is only needed to rebuild these two splits).
        SplitFileError: the file is not a readable ``.mat`` file.
    """
    try:
        from scipy.io import loadmat
    except ImportError as e:
        raise ImportError(
            f"reading {path} needs scipy (`pip install scipy`); alternatively fetch the split file with "
            "tools/prepare_data.py, which makes the .mat annotations unnecessary"
        ) from e
    try:
        raw = loadmat(str(path), squeeze_me=True)
    except (ValueError, OSError, NotImplementedError) as e:
        raise SplitFileError(f"cannot read MATLAB file {path}: {e}; download it again") from e
    return {k: _at_least_1d(v) for k, v in raw.items() if not k.startswith("__")}


def _at_least_1d(value: Any) -> Any:
    import numpy as np

    return np.atleast_1d(value) if isinstance(value, np.ndarray) else value
