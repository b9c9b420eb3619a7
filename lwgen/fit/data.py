"""Check a data folder before a fit (the `lwgen data check` loading and report) and write the CSV the stages read."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from ..data import DataError, ImageTable
from ..data.annotations import read_csv, resolve_csv
from ..data.cli import bad_rows_report
from ..io import atomic_write_text

LOAD_SIZE = 256  # every stage loads at --load-size 256 (their default): checking at it fills the same image cache
FIT_CSV = "annotations.csv"  # written in the fit folder when the stages cannot read the user's CSV as it is
VAL_EVERY = 10  # without train/val rows in a split column, every 10th usable row is held out for the evaluation


@dataclass
class DataReport:
    """What a data folder holds for a fit: usable images, counts per attribute value and every bad row."""

    csv: Path
    rows: int
    images: int
    counts: dict[str, dict[str, int]]
    skipped: list[dict] = field(default_factory=list)
    has_split: bool = False

    def lines(self, per_reason: int = 20) -> list[str]:
        """The report as text: counts per value, then the bad rows grouped by reason."""
        out = [f"{self.images} usable images of {self.rows} rows in {self.csv}"]
        for attribute, counts in self.counts.items():
            out.append(f"{attribute} ({len(counts)} values): "
                       + ", ".join(f"{v} {n}" for v, n in sorted(counts.items(), key=lambda t: (-t[1], t[0]))))
        if self.skipped:
            out += bad_rows_report(self.skipped, per_reason)
        return out


def check_data(data: str | Path, attributes: list[str], csv: str = "annotations.csv", file_column: str = "file",
               text_column: str = "", progress: bool = False) -> DataReport:
    """Load every row as the stages will (bad rows collected, not raised); DataError for a missing folder, CSV or
    column, or when no row is usable."""
    data = Path(data)
    if not attributes:
        raise DataError("choose at least one CSV column to condition on (--attributes)")
    if text_column:
        columns = read_csv(resolve_csv(data, csv)).columns
        if text_column not in columns:
            raise DataError(f"annotation CSV {resolve_csv(data, csv)}: text column {text_column!r} not found; "
                            f"columns are: {', '.join(repr(c) for c in columns)}")
    table = ImageTable.load(data, attributes, size=LOAD_SIZE, csv=csv, file_column=file_column, skip_bad=True,
                            progress=progress, report=False)
    counts = {}
    for j, a in enumerate(table.attributes):
        n = table.labels[:, j].bincount(minlength=len(table.vocab[a])).tolist()
        counts[a] = dict(zip(table.vocab[a], n))
    split = table.extra["split"].astype(str).tolist() if "split" in table.extra.columns else []
    return DataReport(csv=resolve_csv(data, csv), rows=len(table) + len(table.skipped), images=len(table),
                      counts=counts, skipped=table.skipped, has_split="train" in split and "val" in split)


def stage_csv(report: DataReport, file_column: str, skip_bad: bool, out: Path) -> tuple[str, str | None]:
    """The CSV the stages read: the user's own when it has a `file` column, train and val rows and no bad row;
    else a copy in `out` without the bad rows, with the file column named `file` and a split column (every 10th
    row held out). Returns (path for --csv, a note saying what was changed, or None)."""
    if report.skipped and not skip_bad:
        raise DataError("\n".join(bad_rows_report(report.skipped))
                        + f"\n{len(report.skipped)} bad rows in {report.csv} (listed above); fix them, or pass "
                          f"--skip-bad to leave them out")
    if report.images < 2:
        raise DataError(f"{report.csv}: {report.images} usable image(s); a fit needs at least 2 (train and val)")
    if file_column == "file" and report.has_split and not report.skipped:
        return str(report.csv.resolve()), None
    df = read_csv(report.csv)
    bad = {s["row"] - 2 for s in report.skipped}  # CSV row numbers count the header as row 1
    df = df[[i not in bad for i in range(len(df))]].reset_index(drop=True)
    notes = []
    if report.skipped:
        notes.append(f"left out {len(report.skipped)} bad rows")
    if file_column != "file":
        df = df.drop(columns=["file"], errors="ignore").rename(columns={file_column: "file"})
        notes.append(f"file column {file_column!r} named 'file'")
    if not report.has_split:
        df["split"] = ["val" if i % VAL_EVERY == VAL_EVERY - 1 or (len(df) < VAL_EVERY and i == len(df) - 1)
                       else "train" for i in range(len(df))]
        notes.append(f"every {VAL_EVERY}th row held out as split 'val'")
    path, text = (out / FIT_CSV).resolve(), pd.DataFrame(df).to_csv(index=False)
    if not path.is_file() or path.read_text() != text:  # unchanged on a resume: the stages' image cache stays valid
        atomic_write_text(path, text)
    return str(path), f"wrote {path} ({'; '.join(notes)})"
