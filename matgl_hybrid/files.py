"""Files the package writes: atomic writes that honour the umask, and output paths checked before any work."""

from __future__ import annotations

import contextlib
import json
import os
import stat
import tempfile
from pathlib import Path
from typing import Any


def current_umask() -> int:
    """The process umask, read from ``/proc`` where possible (changing it to read it is not thread-safe)."""
    with contextlib.suppress(OSError, ValueError), open("/proc/self/status") as status:
        for line in status:
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file and ``os.replace``: readers see old or new, never half.

    The file gets the permissions an ordinary ``open(path, "w")`` would give: those of the file it replaces, or
    0666 minus the umask for a new one, not the 0600 of a temporary file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    mode = stat.S_IMODE(path.stat().st_mode) if path.is_file() else 0o666 & ~current_umask()
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.chmod(tmp, mode)  # by path: os.fchmod is POSIX-only before Python 3.13
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    """:func:`atomic_write_bytes` of UTF-8 text."""
    atomic_write_bytes(path, text.encode())


def read_json(path: str | Path) -> Any:
    """The value of a JSON file; an empty, truncated or malformed file raises a one-line ValueError naming it."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path} is not UTF-8 text (byte {exc.start}: {exc.reason})") from None
    try:
        return json.loads(text)
    except ValueError as exc:
        raise ValueError(f"{path} is not valid JSON (empty, truncated or damaged?): {exc}") from None


def make_temp_dir(parent: str | Path, prefix: str) -> Path:
    """A new empty folder in ``parent`` with the permissions of ``mkdir`` (0777 minus the umask), not 0700."""
    path = Path(tempfile.mkdtemp(dir=parent, prefix=prefix))
    path.chmod(0o777 & ~current_umask())
    return path


def _existing_ancestor(path: Path) -> Path:
    """``path`` or its nearest ancestor that exists."""
    path = path.absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def _check_writable(path: Path, what: Path) -> None:
    """Raise unless files can be created in the folder that will hold ``path`` (found by really trying)."""
    ancestor = _existing_ancestor(path)
    if not ancestor.is_dir():
        raise NotADirectoryError(f"cannot write {what}: {ancestor} is a file, not a folder")
    try:
        fd, probe = tempfile.mkstemp(dir=ancestor, prefix=".matgl-hybrid-write-check.")
    except OSError as exc:
        raise PermissionError(f"cannot write {what}: {ancestor} is not writable ({exc.strerror})") from exc
    os.close(fd)
    os.unlink(probe)


def check_output_file(path: str | Path, overwrite: bool = True) -> Path:
    """Check, before any work, that a file can be written at ``path``; returns it as a Path.

    Args:
        path: the file to be written.
        overwrite: whether an existing file there may be replaced.

    Raises:
        IsADirectoryError: ``path`` is an existing folder.
        FileExistsError: ``path`` exists and ``overwrite`` is False.
        NotADirectoryError: a component of ``path`` is a file.
        PermissionError: the folder that would hold it is not writable.
    """
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"{path} is a folder; give the name of the file to write")
    if not overwrite and path.exists():
        raise FileExistsError(f"{path} exists: choose another name, or --overwrite to replace it")
    _check_writable(path.parent, path)
    return path


def same_path(a: str | Path, b: str | Path) -> bool:
    """Whether ``a`` and ``b`` name the same file (through links, ``..`` or a relative path), existing or not."""
    a, b = Path(a), Path(b)
    if a.exists() and b.exists():
        return os.path.samefile(a, b)
    return a.resolve() == b.resolve()


def check_paths_distinct(outputs: dict[str, str | Path | None], inputs: dict[str, str | Path]) -> None:
    """Refuse, before any work, an output that is an input or another output (``{"--flag": path}`` each; None
    outputs are left out).

    Raises:
        ValueError: naming both flags and the path.
    """
    named = [(flag, path) for flag, path in outputs.items() if path is not None]
    for i, (flag, path) in enumerate(named):
        for other, source in [*inputs.items(), *named[i + 1 :]]:
            if same_path(path, source):
                role = "the input" if other in inputs else "also"
                raise ValueError(f"{flag} {path} is {role} {other}: writing it would destroy it; give another path")


def check_output_dir(path: str | Path) -> Path:
    """Check, before any work, that ``path`` is or can become a writable folder; returns it as a Path.

    Raises:
        NotADirectoryError: ``path`` or one of its parents is a file.
        PermissionError: the folder (or the parent it would be created in) is not writable.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise NotADirectoryError(f"{path} is a file; give a folder to write into")
    _check_writable(path, path)
    return path
