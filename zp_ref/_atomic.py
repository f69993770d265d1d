"""Atomic file writes: the one implementation behind every file zp_ref writes (state
and diagnostics documents, the CLI's, the demo's and the study's JSON and PNG files).

A write goes to a new temporary file in the target's folder (``.<name>.<random>.tmp``),
is flushed and fsync'ed, moved over the target with one ``os.replace``, and the folder
is fsync'ed: the path holds its old content or the new one at every instant, whenever
the process dies or is interrupted. On any failure the temporary file is removed and
the target is untouched; an ``OSError`` (a full disk, a failing encoder) is raised again
as :class:`WriteError`, one line naming the path.

Permissions: a new file gets ``0o666 & ~umask`` (the temporary file is created with
``os.open(..., 0o666)``, so the kernel applies the umask and default ACLs, as for
``open(path, "w")``); a file that is replaced keeps its permission bits (an 0600
checkpoint stays 0600). A symlink is followed: its target is replaced.

Use :func:`atomic_write_bytes`, :func:`atomic_write_json` or :func:`atomic_savefig`;
:func:`atomic_write` takes a callable that writes into the open binary file.
"""
from __future__ import annotations

import json
import os
import secrets
import stat
from pathlib import Path


class WriteError(OSError):
    """A file could not be written; the file at the path (if any) is unchanged.
    ``errno`` is the failing call's (None when it gave none)."""


def as_path(path, name="path") -> Path:
    """``path`` as a Path; TypeError naming ``name`` unless it is a str or os.PathLike."""
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"{name} must be a str or os.PathLike, got {type(path).__name__}")
    return Path(path)


def write_target(path: Path) -> Path:
    """The file a write to ``path`` replaces: a symlink is followed to its target.
    Refuses a folder, a non-regular file or a missing parent folder (ValueError)."""
    target = Path(os.path.realpath(path)) if path.is_symlink() else path
    if target.is_dir():
        raise ValueError(f"path {str(path)!r} is a folder; give a file name (nothing was "
                         f"written)")
    if target.exists() and not target.is_file():
        raise ValueError(f"path {str(path)!r} exists and is not a regular file (FIFO, device "
                         f"or socket); nothing was written")
    if not target.parent.is_dir():
        raise ValueError(f"path: folder {str(target.parent)!r} does not exist")
    return target


def _fsync_folder(folder: Path) -> None:
    """Make a rename in ``folder`` durable (best effort: some systems cannot open or
    fsync a folder)."""
    try:
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _new_temp_file(target: Path) -> tuple:
    """(fd, path) of a new, exclusively created file beside ``target``, mode
    ``0o666 & ~umask``."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0) | \
        getattr(os, "O_BINARY", 0) | getattr(os, "O_NOFOLLOW", 0)
    for _ in range(100):
        tmp = target.parent / f".{target.name}.{secrets.token_hex(6)}.tmp"
        try:
            return os.open(tmp, flags, 0o666), tmp
        except FileExistsError:
            continue
    raise FileExistsError(f"no free temporary file name beside {target}")


def _mode_of(target: Path):
    """Permission bits of the file ``target`` replaces, None when there is none."""
    try:
        return stat.S_IMODE(os.stat(target).st_mode) & 0o777
    except FileNotFoundError:
        return None


def atomic_write(path, write) -> Path:
    """Write a file atomically: ``write(f)`` writes the content into ``f``, the open
    binary temporary file (it may call ``f.write`` any number of times).

    Parameters
    ----------
    path : str or os.PathLike
        The file to write (created or replaced; its folder must exist).
    write : callable
        ``write(f) -> None``. An exception it raises aborts the write (an ``OSError``
        becomes :class:`WriteError`); the target is then untouched.

    Returns
    -------
    Path
        ``path``.
    """
    path = as_path(path)
    target = write_target(path)
    mode = _mode_of(target)
    existed = mode is not None
    tmp = None
    try:
        fd, tmp = _new_temp_file(target)
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        if mode is not None:
            os.chmod(tmp, mode)                # the replaced file's permissions
        os.replace(tmp, target)
        tmp = None
    except BaseException as exc:
        if tmp is not None:
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass
        if isinstance(exc, OSError) and not isinstance(exc, WriteError):
            reason = exc.strerror or str(exc) or type(exc).__name__
            kept = "the previous file is unchanged" if existed else "nothing was written"
            err = WriteError(f"could not write {path}: {reason} ({kept})")
            err.errno = exc.errno                # (a filename would change str(err))
            raise err from exc
        raise
    _fsync_folder(target.parent)
    return path


def atomic_write_bytes(path, data) -> Path:
    """Write the bytes ``data`` (bytes, bytearray or memoryview) to ``path``
    atomically (see the module doc). Returns ``path``."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"data must be bytes, got {type(data).__name__}")
    return atomic_write(path, lambda f: f.write(data))


def atomic_write_json(path, obj, *, indent=1, **dumps_kwargs) -> Path:
    """Write ``json.dumps(obj, indent=indent, **dumps_kwargs)`` (UTF-8) to ``path``
    atomically. ``obj`` is encoded first: a value JSON cannot hold raises before any
    file is touched. Returns ``path``."""
    return atomic_write_bytes(path, json.dumps(obj, indent=indent, **dumps_kwargs)
                              .encode("utf-8"))


def atomic_savefig(fig, path, **savefig_kwargs) -> Path:
    """``fig.savefig`` (a matplotlib Figure) into ``path`` atomically: a failing or
    interrupted render leaves the previous image. The format is ``format=`` when given,
    else the file's suffix (``.png`` -> png), as matplotlib chooses it for a path.
    Returns ``path``."""
    path = as_path(path)
    kwargs = dict(savefig_kwargs)
    if kwargs.get("format") is None and path.suffix:
        kwargs["format"] = path.suffix[1:].lower()
    return atomic_write(path, lambda f: fig.savefig(f, **kwargs))
