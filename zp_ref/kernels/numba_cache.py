"""Where Numba caches zp_ref's compiled kernels, chosen before the first ``@njit``.

Numba writes its cache beside the sources (``zp_ref/__pycache__``) or, when that is
not writable, in the user's cache folder (``~/.cache/numba``); with neither (a
read-only install and an unwritable HOME) every ``cache=True`` decoration raises, so
``import zp_ref.rng`` failed even for the numpy backend. Then zp_ref points Numba's
``CACHE_DIR`` to a private folder in the temporary directory (created 0700 and used
only when this user owns it and nobody else can write it, since cache files are
loaded as code), or to a fresh ``mkdtemp`` folder. A ``NUMBA_CACHE_DIR`` the user set
is kept. ``zp_ref.kernels`` (the only package that compiles; zp_ref.rng imports it) calls
:func:`configure_numba_cache` before their first decoration, so ``import zp_ref`` alone
does not import Numba.
"""
import os
import stat
import tempfile

import numba


def writable_dir(path: str) -> bool:
    """True when ``path`` exists or can be created, and a file can be created in it
    (the test Numba itself applies)."""
    try:
        os.makedirs(path, exist_ok=True)
        tempfile.TemporaryFile(dir=path).close()
        return True
    except OSError:
        return False


def numba_default_cache_works(package_dir: str) -> bool:
    """Numba's own locators succeed: the package's ``__pycache__`` or the user-wide
    cache folder is writable."""
    if writable_dir(os.path.join(package_dir, "__pycache__")):
        return True
    from numba.misc.appdirs import AppDirs
    return writable_dir(AppDirs(appname="numba", appauthor=False).user_cache_dir)


def private_temp_cache() -> str | None:
    """``<tmp>/zp_ref-numba-cache-<uid>``, made 0700, when this user owns it and no one
    else can write it; else a new ``mkdtemp`` folder; None if neither can be made."""
    uid = os.getuid() if hasattr(os, "getuid") else 0
    path = os.path.join(tempfile.gettempdir(), f"zp_ref-numba-cache-{uid}")
    try:
        os.makedirs(path, mode=0o700, exist_ok=True)
        info = os.lstat(path)
        if stat.S_ISDIR(info.st_mode) and info.st_uid == uid \
                and not info.st_mode & (stat.S_IWGRP | stat.S_IWOTH) and writable_dir(path):
            return path
    except OSError:
        pass
    try:
        return tempfile.mkdtemp(prefix="zp_ref-numba-cache-")
    except OSError:
        return None


_configured = False


def configure_numba_cache() -> None:
    """Give Numba a writable cache folder when its defaults have none (see above); the
    checks run once per process."""
    global _configured
    if _configured:
        return
    _configured = True
    package_dir = os.path.dirname(os.path.abspath(__file__))
    if os.environ.get("NUMBA_CACHE_DIR") or numba_default_cache_works(package_dir):
        return
    path = private_temp_cache()
    if path is not None:
        os.environ["NUMBA_CACHE_DIR"] = path      # survives Numba re-reading its config
        numba.config.CACHE_DIR = path
