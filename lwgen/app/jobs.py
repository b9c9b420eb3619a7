"""Training jobs of the Train page: data from a server folder, an uploaded zip or the demo shapes; `lwgen fit`
launched as its own process (one at a time on the machine: a lock file holding its pid), stopped with SIGTERM,
and its progress read back from the files it writes (so a reload or another browser sees the same)."""
from __future__ import annotations

import io
import json
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO

from ..data.annotations import read_csv
from ..fit.state import CARD, LOG, STATE, read_state
from ..io import atomic_write_text, read_json_object
from ..training.trainer import STATUS
from .paths import runs_root

ZIP_LIMIT_MB = 200  # an uploaded zip, as sent (Streamlit's own upload limit is 200 MB by default)
UNZIPPED_LIMIT_MB = 2000  # its files once extracted: a zip bomb stops here
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff")
IGNORED_ENTRIES = ("__MACOSX/", ".DS_Store")  # written by macOS's Archive Utility: skipped, not refused
LOCK = ".train.lock"
STARTING_GRACE_S = 30.0  # a lock still without a pid is a launch in progress for this long
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_children: dict[int, subprocess.Popen] = {}  # launched here: polled so that a finished one is reaped


class JobError(ValueError):
    """A training cannot be started, stopped or given this data (the message says why)."""


# --- data --------------------------------------------------------------------------------------------------
def _entry_problem(info: zipfile.ZipInfo) -> str | None:
    """Why a zip entry may not be extracted, or None."""
    name = info.filename
    if name.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", name) or "\\" in name:
        return "has an absolute or Windows path"
    if any(part == ".." for part in PurePosixPath(name).parts):
        return "leads outside the folder (..)"
    if stat.S_ISLNK(info.external_attr >> 16):
        return "is a symbolic link"
    if not info.is_dir() and not name.lower().endswith((*IMAGE_SUFFIXES, ".csv")):
        return f"is not an image or a CSV (allowed: {', '.join(IMAGE_SUFFIXES)}, .csv)"
    return None


def extract_zip(source: bytes | BinaryIO, dest: Path, limit_mb: float = ZIP_LIMIT_MB,
                unzipped_limit_mb: float = UNZIPPED_LIMIT_MB) -> Path:
    """Check every entry of a zip of images + CSV, then extract it into `dest` (kept when it exists: name it by the
    zip's content); returns the data folder (the single top-level folder when everything sits in one). JobError
    naming the first bad entry, before anything is written."""
    data = source if isinstance(source, bytes) else source.read()
    if len(data) > limit_mb * 1e6:
        raise JobError(f"the zip is {len(data) / 1e6:.0f} MB; the limit is {limit_mb:g} MB")
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        entries = [i for i in archive.infolist() if not any(k in i.filename for k in IGNORED_ENTRIES)]
    except zipfile.BadZipFile as e:
        raise JobError(f"not a zip file ({e})") from None
    for info in entries:
        problem = _entry_problem(info)
        if problem:
            raise JobError(f"zip entry {info.filename!r} {problem}; nothing was extracted")
    total = sum(i.file_size for i in entries)
    if total > unzipped_limit_mb * 1e6:
        raise JobError(f"the zip holds {total / 1e6:.0f} MB of files; the limit is {unzipped_limit_mb:g} MB")
    if not any(i.filename.lower().endswith(".csv") for i in entries):
        raise JobError("the zip holds no CSV file (the annotation table: a file column and the label columns)")
    if not dest.is_dir():  # else unpacked before (it appears whole, by a rename): a fit may be reading it
        _unpack(archive, entries, dest, unzipped_limit_mb)
    tops = list(dest.iterdir())
    return tops[0] if len(tops) == 1 and tops[0].is_dir() else dest


def _unpack(archive: zipfile.ZipFile, entries: list[zipfile.ZipInfo], dest: Path, unzipped_limit_mb: float) -> None:
    """Extract the checked entries into DEST.partial, counting the bytes that come out, then rename it to dest."""
    partial = dest.with_name(dest.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    budget = int(unzipped_limit_mb * 1e6)
    for info in entries:
        target = partial / info.filename
        try:
            if info.is_dir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            with archive.open(info) as src, open(target, "wb") as out:
                while chunk := src.read(1 << 20):  # the sizes in the zip's directory may lie: count what comes out
                    budget -= len(chunk)
                    if budget < 0:
                        raise JobError(f"the zip unpacks to more than {unzipped_limit_mb:g} MB; nothing was kept")
                    out.write(chunk)
        except (zipfile.BadZipFile, OSError, EOFError) as e:
            shutil.rmtree(partial, ignore_errors=True)
            raise JobError(f"zip entry {info.filename!r} cannot be unpacked ({e}); nothing was kept") from None
        except JobError:
            shutil.rmtree(partial, ignore_errors=True)
            raise
    partial.mkdir(parents=True, exist_ok=True)
    os.replace(partial, dest)


def csv_files(folder: Path) -> list[str]:
    """The CSV files of a data folder and its sub-folders (two levels), relative to it, annotations.csv first."""
    found = sorted(str(p.relative_to(folder)) for pattern in ("*.csv", "*/*.csv") for p in folder.glob(pattern)
                   if ".lwgen-cache" not in p.parts)
    return sorted(found, key=lambda name: name != "annotations.csv")


def csv_columns(folder: Path, csv: str) -> list[str]:
    """The header of a data folder's CSV (DataError naming the file when it cannot be read)."""
    return list(read_csv(folder / csv).columns)


def demo_data(folder: Path, n: int = 512, size: int = 64) -> Path:
    """The synthetic coloured shapes of `lwgen data shapes` in `folder` (made once)."""
    from ..data import make_shapes

    if not (folder / "annotations.csv").is_file():
        make_shapes(folder, n=n, size=size)
    return folder


# --- the lock ----------------------------------------------------------------------------------------------
def lock_path() -> Path:
    return runs_root() / LOCK


def pid_alive(pid: int) -> bool:
    """Whether process `pid` runs (a finished child of this process is reaped; a zombie counts as gone)."""
    child = _children.get(pid)
    if child is not None and child.poll() is not None:
        _children.pop(pid, None)
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return fields[0] != "Z"
    except (OSError, IndexError):
        return True


def _runs_lwgen(pid: int) -> bool:
    """Whether process `pid` is an lwgen command (not another program that was given the pid of a finished fit)."""
    try:
        return b"lwgen" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return True  # no /proc (or no access): trust the pid


def read_lock() -> dict[str, Any] | None:
    """The running training ({pid, out, argv, started}), or None; a lock whose process is gone is removed."""
    path = lock_path()
    try:
        lock = json.loads(path.read_text() or "{}")
    except FileNotFoundError:
        return None
    except (OSError, json.JSONDecodeError):
        lock = {}
    pid = lock.get("pid")
    if isinstance(pid, int) and pid_alive(pid) and _runs_lwgen(pid):
        return lock
    if pid is None and time.time() - path.stat().st_mtime < STARTING_GRACE_S:
        return {**lock, "starting": True}
    path.unlink(missing_ok=True)
    return None


def _take_lock(out: Path) -> None:
    path = lock_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    for _ in range(2):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            os.close(fd)
            return
        except FileExistsError:
            held = read_lock()  # removes a stale lock, so the second try can take it
            if held is not None:
                raise JobError(f"another training is running ({held.get('out', '?')}, pid {held.get('pid', '?')});"
                               f" one training at a time on this machine: stop it or wait") from None
    raise JobError(f"{path}: cannot take the training lock")


def write_lock(pid: int, out: Path, argv: list[str]) -> None:
    atomic_write_text(lock_path(), json.dumps({"pid": pid, "out": str(out), "argv": argv, "started": time.time()}))


# --- launch, stop, resume ----------------------------------------------------------------------------------
def training_threads() -> int:
    """Torch threads of a training started from the app: every core but one, which stays with the app."""
    return max(1, (os.cpu_count() or 2) - 1)


def fit_argv(data: Path, attributes: list[str], minutes: float, out: Path, schedule: str = "both",
             csv: str = "annotations.csv", file_column: str = "file", text_column: str = "", skip_bad: bool = False,
             force: bool = False, extra: list[str] | None = None) -> list[str]:
    """The `lwgen fit` arguments of the page's choices (without the leading `lwgen`)."""
    argv = ["fit", "--data", str(data), "--attributes", *attributes, "--minutes", f"{minutes:g}", "--out", str(out),
            "--schedule", schedule, "--csv", csv, "--file-column", file_column, "--threads", str(training_threads())]
    if text_column:
        argv += ["--text-column", text_column]
    if skip_bad:
        argv.append("--skip-bad")
    if force:
        argv.append("--force")
    return argv + list(extra or [])


def run_folder(name: str) -> Path:
    """runs/NAME for an output name (JobError for a name that is not a plain folder name)."""
    if not NAME.match(name or ""):
        raise JobError(f"output name {name!r}: use letters, digits, '.', '_' and '-' (at most 64, no '/')")
    return runs_root() / name


def start(argv: list[str], out: Path) -> int:
    """Launch `lwgen ARGV` as a detached process writing to OUT/fit.log; returns its pid (JobError when another
    training holds the lock)."""
    _take_lock(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
        with open(out / LOG, "ab") as log:
            log.write(f"\n$ lwgen {' '.join(argv)}\n".encode())
            log.flush()
            proc = subprocess.Popen([sys.executable, "-m", "lwgen", *argv], stdout=log, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, start_new_session=True,
                                    env={**os.environ, "PYTHONUNBUFFERED": "1"})
    except BaseException:
        lock_path().unlink(missing_ok=True)
        raise
    _children[proc.pid] = proc
    write_lock(proc.pid, out, argv)
    return proc.pid


def stop() -> int | None:
    """Send SIGTERM to the running training (it saves, then exits); its pid, or None when none runs."""
    lock = read_lock()
    if lock is None or not isinstance(lock.get("pid"), int):
        return None
    os.kill(lock["pid"], signal.SIGTERM)
    return lock["pid"]


def resume(out: Path) -> int:
    """Run the fit in `out` again with its own command: finished stages are skipped, an unfinished one continues."""
    state = read_state(out)
    if not state or not state.get("command"):
        raise JobError(f"{out}: no fit state with a command to run again")
    argv = [a for a in state["command"] if a != "--force"]
    return start(argv, out)


# --- progress ----------------------------------------------------------------------------------------------
@dataclass
class Progress:
    """A fit as its files show it: state, the stage now running and its trainer status, the card when done."""

    out: Path
    state: dict[str, Any] | None
    running: bool
    status: dict[str, Any] | None = None
    card: dict[str, Any] | None = None
    log_tail: str = ""
    stages: list[str] = field(default_factory=list)

    @property
    def current(self) -> str | None:
        return (self.state or {}).get("current")

    @property
    def budget_left_s(self) -> float | None:
        """Training seconds left in the fit: the stages not started, plus what the current one has left."""
        if not self.state or not self.state.get("budget"):
            return None
        stages = self.state.get("stages", {})
        left = sum(60 * m for name, m in self.state["budget"].items()
                   if name != self.current and (stages.get(name) or {}).get("status") != "done")
        if self.current in self.state["budget"]:
            status_left = (self.status or {}).get("time_left_s")
            left += 60 * self.state["budget"][self.current] if status_left is None else status_left
        return left

    @property
    def phase(self) -> str:
        """running, done, stopped, failed, or not started."""
        if self.running:
            return "running"
        if self.state is None:
            return "not started"
        phase = self.state.get("state", "stopped")
        return "stopped" if phase == "running" else phase  # its process is gone: killed without a word


def log_tail(path: Path, lines: int = 30) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(max(0, f.seek(0, os.SEEK_END) - 16_000))
            text = f.read().decode("utf-8", "replace")
    except OSError:
        return ""
    return "\n".join(text.replace("\r", "\n").splitlines()[-lines:])


def progress(out: Path) -> Progress:
    """Read a fit's progress from its folder (fit-state.json, the current stage's status.json, fit.json, fit.log)."""
    lock = read_lock()
    running = lock is not None and Path(lock.get("out", "")).resolve() == out.resolve()
    state = read_json_object(out / STATE)
    status = None
    if state and state.get("current"):
        path = (state["stages"].get(state["current"]) or {}).get("path")
        if path and state["current"].startswith(("diffusion-", "autoencoder")):  # the stages a Trainer runs
            status = read_json_object(Path(path) / STATUS)
    card = read_json_object(out / CARD) if (state or {}).get("state") == "done" else None
    return Progress(out, state, running, status, card, log_tail(out / LOG), (state or {}).get("stage_names", []))


def fits() -> list[Path]:
    """The fit folders under runs/ (those with a fit-state.json), newest first."""
    root = runs_root()
    found = [p.parent for p in root.glob(f"*/{STATE}")] if root.is_dir() else []
    return sorted(found, key=lambda p: -(p / STATE).stat().st_mtime)
