"""Atomic, durable file writes (temporary file in the same folder, fsync, rename, fsync of the folder), with the
permissions of the process umask, and a check that an output location can be written before long work."""
from __future__ import annotations

import errno
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any


def _umask() -> int:
    """The process umask (read from /proc where possible: setting it to read it is not thread-safe)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _file_mode() -> int:
    """The mode open() would give a new file: 0666 less the umask (mkstemp makes 0600 files)."""
    return 0o666 & ~_umask()


def fsync_dir(folder: str | os.PathLike) -> None:
    """Make a rename in `folder` durable (no-op where folders cannot be opened, e.g. Windows)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def fsync_file(path: str | os.PathLike) -> None:
    """Flush a written file's data to the disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write bytes to path atomically (temp file in the same folder + fsync + os.replace)."""
    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:
            f.write(data)

    atomic_write(path, write)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write UTF-8 text to path atomically."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write(path: str | os.PathLike, write: Callable[[str], None]) -> None:
    """Call write(temporary path) and rename the result onto path; the temporary file never survives."""
    tmp = prepare(path, write)
    try:
        commit([(tmp, Path(path))])
    finally:
        if tmp.exists():
            tmp.unlink()


def prepare(path: str | os.PathLike, write: Callable[[str], None]) -> Path:
    """Write a file's new content to a temporary path beside it (fsynced, umask permissions); returns that path.

    `commit` renames it into place; the caller removes it if it does not.
    """
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(errno.EISDIR, "is a folder, not a file", str(path))
    tmp = temp_path_for(path)
    try:
        write(str(tmp))
        fsync_file(tmp)
        os.chmod(tmp, _file_mode())
    except BaseException:
        if tmp.exists():
            tmp.unlink()
        raise
    return tmp


def commit(renames: list[tuple[Path, Path]]) -> None:
    """Rename prepared temporary files onto their targets, one right after the other, then fsync the folders."""
    for tmp, path in renames:
        os.replace(tmp, path)
    for folder in {Path(p).parent for _, p in renames}:
        fsync_dir(folder)


def temp_path_for(path: str | os.PathLike) -> Path:
    """Return an unused temporary path in the same folder as path (caller renames it)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    return Path(tmp)


def check_writable_folder(folder: str | os.PathLike) -> None:
    """Create `folder` if needed and write (then remove) a probe file in it; raises OSError naming the path."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise NotADirectoryError(errno.ENOTDIR, "exists and is not a folder", str(folder))
    folder.mkdir(parents=True, exist_ok=True)
    try:
        fd, probe = tempfile.mkstemp(prefix=".lwgen-write-check.", dir=folder)
    except OSError as e:
        raise type(e)(e.errno, e.strerror or "cannot write here", str(folder)) from None
    os.close(fd)
    os.unlink(probe)


def check_writable_file(path: str | os.PathLike) -> None:
    """The file `path` can be (re)written: not a folder, and its folder is writable (created when missing)."""
    path = Path(path)
    if str(path).endswith(os.sep) or path.is_dir():
        raise IsADirectoryError(errno.EISDIR, "is a folder; give a file name", str(path))
    check_writable_folder(path.parent)


def describe_os_error(e: OSError) -> str:
    """One line naming the path and the cause of an OSError."""
    where = e.filename if e.filename is not None else None
    cause = e.strerror or str(e)
    if e.errno == errno.ENOSPC:
        cause = "no space left on the disk"
    return f"{where}: {cause}" if where is not None else cause


def read_json_object(path: Path) -> dict[str, Any] | None:
    """The JSON object in a file, or None when the file is missing, unreadable, not JSON or not an object (for
    displays that show what they can: status files rewritten while they are read, optional scores)."""
    try:
        value = json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return value if isinstance(value, dict) else None
