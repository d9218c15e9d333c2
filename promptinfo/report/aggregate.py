"""Read run folders (see the run-folder contract) into tidy pandas tables.

``load_runs`` walks a folder for ``results.json`` files and returns one row per run and
evaluation; ``read_metrics`` reads a run's ``metrics.jsonl`` (one row per epoch).
"""

from __future__ import annotations

import json
import logging
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from promptinfo.errors import PromptInfoError

logger = logging.getLogger(__name__)

RESULTS_FILE = "results.json"
METRICS_FILE = "metrics.jsonl"
FINISHED = "finished"

RUN_KEYS = ("experiment", "backbone", "weights", "method", "dataset", "protocol", "shots", "seed")
"""Fields that identify a run; two folders with the same values are duplicates."""

_STRING_FIELDS = ("method", "dataset", "protocol", "backbone", "weights")
ON_INVALID = ("error", "skip")


class ReportError(PromptInfoError, ValueError):
    """A results or metrics file cannot be read, or run folders contradict each other."""


@dataclass(frozen=True)
class SkippedRun:
    """A run folder left out of the tables, with the reason."""

    run: str
    reason: str


@dataclass
class RunCollection:
    """Every finished run under ``root`` as a tidy frame, plus the folders that were skipped.

    Attributes:
        root: the folder that was searched.
        frame: one row per (run, evaluation); columns ``run`` (folder relative to root),
            the ``RUN_KEYS``, ``evaluation``, ``eval_dataset``, ``subsample``, ``correct``,
            ``total``, ``accuracy`` (percent), ``harmonic_mean``, ``wall_time_s``, one
            ``metric/<name>`` column per information metric found in ``results.json`` and, for runs
            with unlabelled images, ``pseudo/<name>`` columns (the last epoch's pseudo-label counts
            and accuracy).
        skipped: runs not in ``frame`` (unfinished, or invalid with ``on_invalid="skip"``).
    """

    root: Path
    frame: pd.DataFrame
    skipped: list[SkippedRun] = field(default_factory=list)

    def skipped_frame(self) -> pd.DataFrame:
        return pd.DataFrame([vars(s) for s in self.skipped], columns=["run", "reason"])


def find_run_dirs(root: str | os.PathLike) -> list[Path]:
    """Folders under ``root`` (itself included) holding a results.json or a metrics.jsonl, sorted.

    Hidden folders (``.hydra``, ``.cache``) are not searched.
    """
    root = Path(root)
    if not root.is_dir():
        raise ReportError(f"runs folder {str(root)!r} does not exist or is not a folder; pass the folder holding run folders")
    found = []
    for folder, subdirs, files in os.walk(root):
        subdirs[:] = sorted(d for d in subdirs if not d.startswith("."))
        if RESULTS_FILE in files or METRICS_FILE in files:
            found.append(Path(folder))
    return sorted(found)


def load_runs(root: str | os.PathLike, on_invalid: str = "error") -> RunCollection:
    """Collect the finished runs under ``root``.

    Runs whose ``status`` is not ``"finished"`` and folders with a metrics.jsonl but no
    results.json (running or crashed) are skipped and listed in ``skipped``.

    Args:
        root: folder searched recursively for run folders.
        on_invalid: ``"error"`` raises :class:`ReportError` naming the first unreadable or
            malformed results.json; ``"skip"`` logs a warning and lists it in ``skipped``.

    Raises:
        ReportError: a malformed file (with ``on_invalid="error"``), or two folders holding
            the same run (same ``RUN_KEYS``).
    """
    if on_invalid not in ON_INVALID:
        raise ValueError(f"on_invalid must be one of {ON_INVALID}, got {on_invalid!r}")
    root = Path(root)
    rows: list[dict[str, Any]] = []
    skipped: list[SkippedRun] = []
    for run_dir in find_run_dirs(root):
        run = run_dir.relative_to(root).as_posix() if run_dir != root else "."
        reason, results = _read_run(run_dir, on_invalid)
        if reason is not None:
            logger.warning("skipping run %s: %s", run_dir, reason)
            skipped.append(SkippedRun(run, reason))
            continue
        rows.extend(result_rows(results, run))
    frame = _to_frame(rows)
    _check_duplicates(frame, root)
    return RunCollection(root=root, frame=frame, skipped=skipped)


def _read_run(run_dir: Path, on_invalid: str) -> tuple[str | None, dict | None]:
    """(reason to skip, None) or (None, validated results)."""
    path = run_dir / RESULTS_FILE
    if not path.exists():
        return f"no {RESULTS_FILE} (still running or crashed)", None
    try:
        results = read_results(path)
    except ReportError as err:
        if on_invalid == "error":
            raise
        return f"invalid {RESULTS_FILE}: {err}", None
    if results["status"] != FINISHED:
        return f"status is {results['status']!r}, not {FINISHED!r}", None
    return None, results


def read_results(path: str | os.PathLike) -> dict[str, Any]:
    """Parse and validate one results.json; unfinished runs are only checked for ``status``.

    Raises:
        ReportError: naming the file and the offending field.
    """
    path = Path(path)
    try:
        results = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ReportError(f"{path}: cannot read as JSON ({err}); rerun or remove the run folder") from None
    if not isinstance(results, dict):
        raise ReportError(f"{path}: expected a JSON object, got {type(results).__name__}")
    if not isinstance(results.get("status"), str):
        raise ReportError(f"{path}: missing or non-string 'status' (expected {FINISHED!r} for a finished run)")
    if results["status"] == FINISHED:
        _validate_finished(results, path)
    return results


def _validate_finished(results: dict, path: Path) -> None:
    def fail(message: str) -> ReportError:
        return ReportError(f"{path}: {message}; see the run-folder contract (results.json)")

    for key in _STRING_FIELDS:
        if not isinstance(results.get(key), str) or not results[key]:
            raise fail(f"field {key!r} must be a non-empty string, got {results.get(key)!r}")
    if results.get("experiment") is not None and not isinstance(results["experiment"], str):
        raise fail(f"field 'experiment' must be a string or null, got {results['experiment']!r}")
    if not _is_int(results.get("seed")):
        raise fail(f"field 'seed' must be an integer, got {results.get('seed')!r}")
    if results.get("shots") is not None and not _is_int(results["shots"]):
        raise fail(f"field 'shots' must be an integer or null, got {results['shots']!r}")
    evaluations = results.get("evaluations")
    if not isinstance(evaluations, dict) or not evaluations:
        raise fail("field 'evaluations' must be a non-empty object {name: {accuracy, ...}}")
    for name, evaluation in evaluations.items():
        accuracy = evaluation.get("accuracy") if isinstance(evaluation, dict) else None
        if not _is_number(accuracy) or not 0.0 <= accuracy <= 100.0:
            raise fail(f"evaluations[{name!r}].accuracy must be a percentage in [0, 100], got {accuracy!r}")
    metrics = results.get("metrics") or {}
    if not isinstance(metrics, dict) or not all(isinstance(m, dict) for m in metrics.values()):
        raise fail("field 'metrics' must map evaluation names to objects of numbers")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def result_rows(results: dict[str, Any], run: str) -> list[dict[str, Any]]:
    """One tidy row per evaluation of a validated, finished results.json."""
    base = {key: results.get(key) for key in RUN_KEYS}
    metrics = results.get("metrics") or {}
    rows = []
    for name, evaluation in results["evaluations"].items():
        row = {"run": run, **base, "evaluation": name}
        row["eval_dataset"] = evaluation.get("dataset", name)
        row["subsample"] = evaluation.get("subsample")
        row["correct"] = evaluation.get("correct")
        row["total"] = evaluation.get("total")
        row["accuracy"] = float(evaluation["accuracy"])
        row["harmonic_mean"] = results.get("harmonic_mean")
        row["wall_time_s"] = results.get("wall_time_s")
        for key, value in (metrics.get(name) or {}).items():
            if _is_number(value):
                row[f"metric/{key}"] = float(value)
        for key, value in (results.get("pseudo_labels") or {}).items():  # protocols with unlabelled images
            if _is_number(value):
                row[f"pseudo/{key}"] = float(value)
        rows.append(row)
    return rows


_BASE_COLUMNS = (
    "run", *RUN_KEYS, "evaluation", "eval_dataset", "subsample", "correct", "total",
    "accuracy", "harmonic_mean", "wall_time_s",
)


def _to_frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    frame = pd.DataFrame(rows)
    for column in _BASE_COLUMNS:
        if column not in frame:
            frame[column] = pd.Series(dtype=object)
    metric_columns = sorted(c for c in frame.columns if c.startswith(("metric/", "pseudo/")))
    frame = frame[[*_BASE_COLUMNS, *metric_columns]]
    for column in ("shots", "seed", "correct", "total"):
        frame[column] = frame[column].astype("Int64")
    for column in ("accuracy", "harmonic_mean", "wall_time_s"):
        frame[column] = frame[column].astype("float64")
    return frame.reset_index(drop=True)


def _check_duplicates(frame: pd.DataFrame, root: Path) -> None:
    runs = frame.drop_duplicates("run")
    identity = pd.Series(["|".join(map(str, key)) for key in runs[list(RUN_KEYS)].itertuples(index=False)],
                         index=runs.index)
    counts = identity.value_counts(sort=False)
    if (counts > 1).any():
        same = runs[identity == counts[counts > 1].index[0]]
        fields = ", ".join(f"{k}={same.iloc[0][k]}" for k in RUN_KEYS)
        raise ReportError(
            f"run folders {same['run'].tolist()} under {root} hold the same run ({fields}); their accuracies "
            "would be averaged as if they were different seeds. Remove the stale copy, give the variants "
            "distinct experiment names, or report a narrower folder"
        )


def read_metrics(run_dir: str | os.PathLike) -> pd.DataFrame:
    """A run's metrics.jsonl as a frame, one row per epoch line, sorted by epoch.

    A final line without its newline is a line still being written by a live run; it is
    dropped with a warning. Any other unparsable line raises.

    Raises:
        ReportError: the file is missing, a line is not a JSON object, or lines lack ``epoch``.
    """
    path = Path(run_dir) / METRICS_FILE
    if not path.is_file():
        raise ReportError(f"{path} does not exist; trajectories need the metrics.jsonl the engine writes per epoch")
    text = path.read_text()
    lines = text.split("\n")
    records = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            if number == len(lines) and not text.endswith("\n"):
                logger.warning("%s: ignoring incomplete last line %d (run still writing?)", path, number)
                continue
            raise ReportError(f"{path}, line {number}: not valid JSON ({err})") from None
        if not isinstance(record, dict) or not _is_number(record.get("epoch")):
            raise ReportError(f"{path}, line {number}: expected an object with a numeric 'epoch', got {line[:80]!r}")
        records.append(record)
    if not records:
        raise ReportError(f"{path} holds no epoch lines yet")
    return pd.DataFrame(records).sort_values("epoch", kind="stable").reset_index(drop=True)
