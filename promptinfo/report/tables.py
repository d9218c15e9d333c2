"""Paper-style accuracy tables from the tidy run frame of :func:`~promptinfo.report.aggregate.load_runs`.

Every table groups runs by *setting* (experiment, backbone, weights, method, shots) and
averages accuracies over seeds: mean and sample standard deviation (ddof = 1, blank for a
single seed). Each :class:`Table` carries the numbers (``data``, written as CSV) and their
formatted view (``display``, written as Markdown and LaTeX).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import pandas as pd

from promptinfo.metrics import harmonic_mean
from promptinfo.report.aggregate import ReportError
from promptinfo.report.names import method_display_name, method_order

SETTING_KEYS = ("experiment", "backbone", "weights", "method", "shots")
"""Runs that agree on these (and the dataset) are seeds of one table cell."""

AVERAGE = "Average"
MEAN_HM = "Mean of per-dataset HM"
FEW_SHOT_PROTOCOLS = ("few_shot", "zeroshot")
TRANSFER_PROTOCOLS = ("cross_dataset", "domain_generalization")
UNLABELLED_PROTOCOLS = ("semi_supervised", "unsupervised", "transductive_zero_shot")

_LABELS = {"experiment": "Experiment", "backbone": "Backbone", "weights": "Weights", "method": "Method", "shots": "Shots"}


@dataclass
class Table:
    """One report table.

    Attributes:
        name: file stem (``base2novel`` -> ``base2novel.csv``, ``.md``, ``.tex``).
        title: heading.
        data: numbers at full precision, one row per cell group (written as CSV).
        display: formatted strings, the paper layout (written as Markdown and LaTeX).
        caption: what the numbers are, including how averages and HM are formed.
        label_columns: how many leading ``display`` columns are labels (left-aligned).
        summary_start: index of the first ``display`` row of averages (a rule goes above it), or None.
    """

    name: str
    title: str
    data: pd.DataFrame
    display: pd.DataFrame
    caption: str
    label_columns: int
    summary_start: int | None = None


def format_cell(mean: float, std: float = math.nan, decimals: int = 2) -> str:
    """``"mean ± std"``, just ``"mean"`` when std is missing, ``""`` when mean is missing."""
    if pd.isna(mean):
        return ""
    text = f"{mean:.{decimals}f}"
    return text if pd.isna(std) else f"{text} ± {std:.{decimals}f}"


def seed_statistics(frame: pd.DataFrame, keys: Sequence[str]) -> pd.DataFrame:
    """Accuracy over seeds per group: ``mean``, ``std`` (ddof=1), ``n_seeds`` and ``seeds`` ("1,2,3").

    Raises:
        ReportError: a seed occurs twice in one group (e.g. the same zero-shot run under two protocols).
    """
    twice = frame[frame.duplicated([*keys, "seed"], keep=False)]
    if not twice.empty:
        raise ReportError(
            f"runs {sorted(set(twice['run']))} fall into the same table cell with the same seed "
            f"{twice['seed'].iloc[0]}; keep one of them or give them distinct experiment names"
        )
    grouped = frame.groupby(list(keys), dropna=False, sort=True)
    return grouped.agg(
        mean=("accuracy", "mean"),
        std=("accuracy", "std"),
        n_seeds=("seed", "nunique"),
        seeds=("seed", lambda s: ",".join(str(v) for v in sorted(s))),
    ).reset_index()


def _prepare(frame: pd.DataFrame, protocols: Sequence[str]) -> pd.DataFrame:
    runs = frame[frame["protocol"].isin(protocols)].copy()
    runs["experiment"] = runs["experiment"].fillna("")
    return runs


def _varying(data: pd.DataFrame) -> list[str]:
    """Setting keys that take more than one value (always including ``method``)."""
    return [k for k in SETTING_KEYS if k == "method" or data[k].map(str).nunique() > 1]


def _setting_labels(setting: tuple, shown: Sequence[str]) -> dict[str, str]:
    values = dict(zip(SETTING_KEYS, setting))
    labels = {_LABELS[k]: "" if pd.isna(values[k]) else str(values[k]) for k in shown}
    if "method" in shown:
        labels[_LABELS["method"]] = method_display_name(labels[_LABELS["method"]])
    return labels


def _in_order(data: pd.DataFrame, keys: Sequence[str]) -> pd.DataFrame:
    """``data`` sorted by ``keys``, methods in :data:`~promptinfo.report.names.METHOD_NAMES` order."""
    return data.sort_values(list(keys), kind="stable", key=lambda s: method_order(s) if s.name == "method" else s)


def _with_int_shots(data: pd.DataFrame) -> pd.DataFrame:
    """Concatenation with summary rows turns integer columns to float; restore them (missing -> <NA>)."""
    for column in ("shots", "n_seeds", "n_datasets"):
        data[column] = data[column].astype("Int64")
    return data


def _seeds_phrase(stats: pd.DataFrame) -> str:
    counts = sorted(set(stats["n_seeds"].dropna().astype(int)))
    if len(counts) == 1:
        return f"{counts[0]} seed{'s' if counts[0] > 1 else ''}"
    return f"{counts[0]}-{counts[-1]} seeds (see n_seeds in the CSV)"


# --------------------------------------------------------------------------- base to novel
def _require_base_novel(runs: pd.DataFrame) -> None:
    present = runs.groupby("run")["evaluation"].agg(set)
    incomplete = present[present.map(lambda names: not {"base", "novel"} <= names)]
    if not incomplete.empty:
        raise ReportError(
            f"base2novel runs need both 'base' and 'novel' evaluations; run {incomplete.index[0]!r} has "
            f"{sorted(incomplete.iloc[0])}. Re-evaluate it or remove it from the runs folder"
        )


def base2novel_numbers(frame: pd.DataFrame) -> pd.DataFrame:
    """Per setting and dataset: Base, Novel (mean, std over seeds) and HM of the two means.

    Per setting, an ``Average`` row holds the mean over datasets of Base and Novel and the HM
    of those two averages; a ``Mean of per-dataset HM`` row holds the arithmetic mean of
    the datasets' HM values (the two differ; papers report the former). With a single dataset
    there are no such rows: they would repeat its numbers.
    """
    runs = _prepare(frame, ["base2novel"])
    _require_base_novel(runs)
    keys = [*SETTING_KEYS, "dataset"]
    base = seed_statistics(runs[runs["evaluation"] == "base"], keys)
    novel = seed_statistics(runs[runs["evaluation"] == "novel"], keys)
    rows = base.rename(columns={"mean": "base", "std": "base_std"}).merge(
        novel[[*keys, "mean", "std"]].rename(columns={"mean": "novel", "std": "novel_std"}), on=keys, how="outer"
    )
    rows["hm"] = [harmonic_mean(b, n) for b, n in zip(rows["base"], rows["novel"])]
    rows["n_datasets"] = 1
    columns = [*keys, "n_seeds", "seeds", "base", "base_std", "novel", "novel_std", "hm", "n_datasets"]
    summaries = _base2novel_summaries(rows) if rows["dataset"].nunique() > 1 else []
    return _with_int_shots(pd.concat([rows, pd.DataFrame(summaries, columns=columns)], ignore_index=True)[columns])


def _base2novel_summaries(rows: pd.DataFrame) -> list[dict]:
    summaries = []
    for setting, group in rows.groupby(list(SETTING_KEYS), dropna=False, sort=True):
        b, n = group["base"].mean(), group["novel"].mean()
        common = dict(zip(SETTING_KEYS, setting), n_datasets=len(group))
        summaries.append({**common, "dataset": AVERAGE, "base": b, "novel": n, "hm": harmonic_mean(b, n)})
        summaries.append({**common, "dataset": MEAN_HM, "hm": group["hm"].mean()})
    return summaries


def base2novel_table(frame: pd.DataFrame, decimals: int = 2) -> Table | None:
    """Base / Novel / HM per dataset and method (CoCoOp, Zhou et al. 2022, Table 1 layout).

    With a single dataset, the dataset is named in the title instead of a column of its own.
    """
    if not frame["protocol"].eq("base2novel").any():
        return None
    data = base2novel_numbers(frame)
    shown = _varying(data)
    summary = data["dataset"].isin([AVERAGE, MEAN_HM])
    datasets = sorted(set(data.loc[~summary, "dataset"]))
    ordered = pd.concat([_in_order(data[~summary], ["dataset", *SETTING_KEYS]),
                         _in_order(data[data["dataset"] == AVERAGE], SETTING_KEYS),
                         _in_order(data[data["dataset"] == MEAN_HM], SETTING_KEYS)])
    rows = []
    for row in ordered.itertuples(index=False):
        setting = tuple(getattr(row, k) for k in SETTING_KEYS)
        partial = row.dataset in (AVERAGE, MEAN_HM) and row.n_datasets < len(datasets)
        label = f"{row.dataset} ({row.n_datasets}/{len(datasets)})" if partial else row.dataset
        rows.append({**({"Dataset": label} if len(datasets) > 1 else {}), **_setting_labels(setting, shown),
                     "Base": format_cell(row.base, row.base_std, decimals),
                     "Novel": format_cell(row.novel, row.novel_std, decimals),
                     "HM": format_cell(row.hm, decimals=decimals)})
    several = len(datasets) > 1
    title = "Base-to-novel generalisation" + ("" if several else f" on {datasets[0]}")
    return Table("base2novel", title, data, pd.DataFrame(rows), _base2novel_caption(data, datasets),
                 label_columns=len(shown) + several, summary_start=int((~summary).sum()) if several else None)


def _base2novel_caption(data: pd.DataFrame, datasets: list[str]) -> str:
    where = "" if len(datasets) > 1 else f" on {datasets[0]}"
    caption = (f"Base-to-novel accuracy (%){where}, mean ± sample std over {_seeds_phrase(data)}. HM is the "
               "harmonic mean 2BN/(B+N) of the row's seed-averaged Base and Novel accuracies")
    if len(datasets) == 1:
        return caption + "."
    return caption + (
        "; in the Average row, Base and Novel are means over datasets and HM is the harmonic mean of those two "
        f"averages (as in the CoCoOp and MaPLe papers). The row '{MEAN_HM}' gives instead the arithmetic mean of "
        "the per-dataset HM values (k/N: averaged over only the k of the N datasets run for that method)."
    )


# --------------------------------------------------------------------------- few-shot
def few_shot_numbers(frame: pd.DataFrame) -> pd.DataFrame:
    """Test accuracy per setting (shots included) and dataset, with an ``Average`` row per setting
    (none with a single dataset: it would repeat its numbers)."""
    runs = _prepare(frame, FEW_SHOT_PROTOCOLS)
    runs = runs[runs["evaluation"] == "test"]
    keys = [*SETTING_KEYS, "dataset"]
    stats = seed_statistics(runs, keys)
    stats["n_datasets"] = 1
    averages = [
        {**dict(zip(SETTING_KEYS, setting)), "dataset": AVERAGE, "mean": group["mean"].mean(), "n_datasets": len(group)}
        for setting, group in stats.groupby(list(SETTING_KEYS), dropna=False, sort=False)
    ] if stats["dataset"].nunique() > 1 else []
    columns = [*keys, "n_seeds", "seeds", "mean", "std", "n_datasets"]
    return _with_int_shots(pd.concat([stats, pd.DataFrame(averages, columns=columns)], ignore_index=True)[columns])


def few_shot_table(frame: pd.DataFrame, decimals: int = 2) -> Table | None:
    """Rows: method x shots; columns: datasets and their average (CoOp, Zhou et al. 2022)."""
    if not (frame["protocol"].isin(FEW_SHOT_PROTOCOLS) & frame["evaluation"].eq("test")).any():
        return None
    data = few_shot_numbers(frame)
    datasets = sorted(set(data["dataset"]) - {AVERAGE})
    caption = f"Few-shot test accuracy (%), mean ± sample std over {_seeds_phrase(data)}."
    if len(datasets) > 1:
        caption += (f" {AVERAGE} is the mean over datasets of the seed-averaged accuracies (a suffix k/N marks a "
                    "row run on only k of the N datasets).")
    display = _wide_display(data, "dataset", datasets, len(datasets), decimals)
    return Table("few_shot", "Few-shot classification", data, display, caption, label_columns=len(_varying(data)))


# --------------------------------------------------------------------------- cross-dataset / domain generalisation
def transfer_numbers(frame: pd.DataFrame, protocol: str) -> pd.DataFrame:
    """Accuracy per setting, source dataset and evaluated dataset, with an ``Average`` over targets.

    The evaluation named like the run's ``dataset`` is the source (``role="source"``); every
    other evaluation is a target. ``Average`` is the mean of the target means (none with a
    single target: it would repeat its numbers).
    """
    runs = _prepare(frame, [protocol]).rename(columns={"dataset": "source"})
    runs["role"] = (runs["evaluation"] == runs["source"]).map({True: "source", False: "target"})
    keys = [*SETTING_KEYS, "source", "evaluation", "role"]
    stats = seed_statistics(runs, keys)
    stats["n_datasets"] = 1
    targets = stats[stats["role"] == "target"]
    targets = targets if targets["evaluation"].nunique() > 1 else targets.iloc[:0]
    averages = [
        {**dict(zip([*SETTING_KEYS, "source"], key)), "evaluation": AVERAGE, "role": "average",
         "mean": group["mean"].mean(), "n_datasets": len(group)}
        for key, group in targets.groupby([*SETTING_KEYS, "source"], dropna=False, sort=False)
    ]
    columns = [*keys, "n_seeds", "seeds", "mean", "std", "n_datasets"]
    return _with_int_shots(pd.concat([stats, pd.DataFrame(averages, columns=columns)], ignore_index=True)[columns])


_TRANSFER_TITLES = {"cross_dataset": "Cross-dataset transfer", "domain_generalization": "Domain generalisation"}


def transfer_table(frame: pd.DataFrame, protocol: str, decimals: int = 2) -> Table | None:
    """Rows: method (and source); columns: source, each target and the target average (CoCoOp Table 2/3 layout)."""
    if protocol not in TRANSFER_PROTOCOLS:
        raise ValueError(f"protocol must be one of {TRANSFER_PROTOCOLS}, got {protocol!r}")
    if not frame["protocol"].eq(protocol).any():
        return None
    data = transfer_numbers(frame, protocol)
    in_order = list(dict.fromkeys(frame.loc[frame["protocol"] == protocol, "evaluation"]))
    sources = [e for e in in_order if e in set(data.loc[data["role"] == "source", "evaluation"])]
    targets = [e for e in in_order if e not in sources]
    display = _wide_display(data.assign(dataset=data["evaluation"]), "dataset", [*sources, *targets], len(targets),
                            decimals, headers={s: f"{s} (source)" for s in sources}, average_header="Average (targets)",
                            extra_keys=["source"])
    caption = (f"{_TRANSFER_TITLES[protocol]}: accuracy (%), mean ± sample std over {_seeds_phrase(data)}. Prompts "
               "are learned on the source dataset and evaluated unchanged on each target.")
    if len(targets) > 1:
        caption += (" Average (targets) is the mean of the seed-averaged target accuracies; the source is excluded "
                    "(k/N: only k of the N targets were run).")
    label_columns = len(_varying(data)) + int(data["source"].nunique() > 1)
    return Table(protocol, _TRANSFER_TITLES[protocol], data, display, caption, label_columns=label_columns)


# --------------------------------------------------------------------------- unlabelled images
def pseudo_label_numbers(frame: pd.DataFrame) -> pd.DataFrame:
    """Per setting, protocol, dataset and evaluation: accuracy over seeds, and the seed means of the last
    epoch's pseudo-label accuracy (against the hidden labels) and number of pseudo-labelled images."""
    runs = _prepare(frame, UNLABELLED_PROTOCOLS)
    keys = [*SETTING_KEYS, "protocol", "dataset", "evaluation"]
    stats = seed_statistics(runs, keys)
    pseudo = [c for c in ("pseudo/accuracy", "pseudo/labelled") if c in runs]
    if pseudo:
        stats = stats.merge(runs.groupby(keys, dropna=False)[pseudo].mean().reset_index(), on=keys, how="left")
    return _with_int_shots(stats.assign(n_datasets=1))


def pseudo_label_table(frame: pd.DataFrame, decimals: int = 2) -> Table | None:
    """Rows: method, protocol and dataset; columns: each evaluation's accuracy, then the pseudo-labels'."""
    if not frame["protocol"].isin(UNLABELLED_PROTOCOLS).any():
        return None
    data = pseudo_label_numbers(frame)
    shown = _varying(data)
    rows = []
    for key, group in data.groupby([*SETTING_KEYS, "protocol", "dataset"], dropna=False, sort=True):
        row = {**_setting_labels(key[: len(SETTING_KEYS)], shown), "Protocol": key[-2], "Dataset": key[-1]}
        for r in group.itertuples(index=False):
            row[r.evaluation.capitalize()] = format_cell(r.mean, r.std, decimals)
        first = group.iloc[0]
        row["Pseudo-label acc."] = format_cell(first.get("pseudo/accuracy", math.nan), decimals=decimals)
        labelled = first.get("pseudo/labelled", math.nan)
        row["Pseudo-labelled / epoch"] = "" if pd.isna(labelled) else f"{labelled:.0f}"
        rows.append(row)
    caption = (
        f"Prompt learning with unlabelled images: accuracy (%), mean ± sample std over {_seeds_phrase(data)}; "
        "pseudo-label accuracy (%) against the images' hidden labels (analysis only, never trained on) and the "
        "number of pseudo-labelled images, both in the last epoch and averaged over seeds."
    )
    return Table("pseudo_labels", "Semi-supervised, unsupervised and transductive runs", data, pd.DataFrame(rows),
                 caption, label_columns=len(shown) + 2)


# --------------------------------------------------------------------------- shared layout
def _wide_display(data: pd.DataFrame, column_key: str, columns: list[str], n_averaged: int, decimals: int,
                  headers: dict[str, str] | None = None, average_header: str = AVERAGE,
                  extra_keys: Sequence[str] = ()) -> pd.DataFrame:
    """One row per setting (and ``extra_keys``), one column per value of ``data[column_key]``, then the average
    (over ``n_averaged`` columns; none when that is 1).

    An extra key is shown as a label column only when it takes several values.
    """
    headers = headers or {}
    shown = _varying(data)
    shown_extra = [k for k in extra_keys if data[k].nunique() > 1]
    rows = []
    in_order = _in_order(data, [*SETTING_KEYS, *extra_keys])
    for key, group in in_order.groupby([*SETTING_KEYS, *extra_keys], dropna=False, sort=False):
        cells = {getattr(r, column_key): r for r in group.itertuples(index=False)}
        row = _setting_labels(key[: len(SETTING_KEYS)], shown)
        extras = dict(zip(extra_keys, key[len(SETTING_KEYS):]))
        row.update({k.capitalize(): str(extras[k]) for k in shown_extra})
        for column in columns:
            cell = cells.get(column)
            row[headers.get(column, column)] = "" if cell is None else format_cell(cell.mean, cell.std, decimals)
        if n_averaged > 1:
            row[average_header] = _average_cell(cells.get(AVERAGE), n_averaged, decimals)
        rows.append(row)
    return pd.DataFrame(rows)


def _average_cell(average, n_averaged: int, decimals: int) -> str:
    text = "" if average is None else format_cell(average.mean, decimals=decimals)
    if average is not None and average.n_datasets < n_averaged:
        text += f" ({average.n_datasets}/{n_averaged})"
    return text


def build_tables(frame: pd.DataFrame, decimals: int = 2) -> list[Table]:
    """Every table the runs in ``frame`` support: base2novel, few_shot, cross_dataset, domain_generalization and
    pseudo_labels (runs with unlabelled images)."""
    tables = [base2novel_table(frame, decimals), few_shot_table(frame, decimals)]
    tables += [transfer_table(frame, protocol, decimals) for protocol in TRANSFER_PROTOCOLS]
    tables.append(pseudo_label_table(frame, decimals))
    return [t for t in tables if t is not None]
