"""Where PneumoView keeps its per-user files, and the two rules for touching them.

Each folder comes from :mod:`platformdirs` unless an environment variable redirects it, so tests
(and users with unusual setups, e.g. a portable install) can point every write at a folder of
their choosing: ``PNEUMOVIEW_CACHE_DIR``, ``PNEUMOVIEW_CONFIG_DIR``, ``PNEUMOVIEW_DATA_DIR``.
The folder functions only compute paths.

What PneumoView writes there can hold patient data (the index cache holds names, IDs and birth
dates; reports hold patient IDs), so every store goes through :func:`private_dir` and
:func:`write_private_file` / :func:`create_private_file`: folders 0700 and files 0600 whatever
the umask, on every platform that has POSIX modes. What PneumoView reads from there (settings,
model metadata) goes through :func:`read_small_file`: a regular file under a size limit, so a
FIFO, a device or a link to ``/dev/zero`` cannot block or exhaust the program.
"""

from __future__ import annotations

import contextlib
import os
import stat
from pathlib import Path

import platformdirs

from pneumoview.core.errors import PneumoViewError

APP_NAME = "pneumoview"
PRIVATE_DIR_MODE = 0o700
PRIVATE_FILE_MODE = 0o600
#: Settings and model metadata are a few KiB; anything much larger is not one of ours.
SMALL_FILE_LIMIT = 4 * 2**20

PathType = str | os.PathLike[str]


def _from_env(var: str, default: str) -> Path:
    value = os.environ.get(var, "").strip()
    return Path(value).expanduser() if value else Path(default)


def cache_dir() -> Path:
    """Disposable files (the folder index cache): ``$PNEUMOVIEW_CACHE_DIR`` or the user cache."""
    return _from_env("PNEUMOVIEW_CACHE_DIR", platformdirs.user_cache_dir(APP_NAME))


def config_dir() -> Path:
    """Settings: ``$PNEUMOVIEW_CONFIG_DIR`` or the user configuration folder."""
    return _from_env("PNEUMOVIEW_CONFIG_DIR", platformdirs.user_config_dir(APP_NAME))


def data_dir() -> Path:
    """Files worth keeping (installed models, reports): ``$PNEUMOVIEW_DATA_DIR`` or user data."""
    return _from_env("PNEUMOVIEW_DATA_DIR", platformdirs.user_data_dir(APP_NAME))


def display_path(text: str) -> str:
    """A path or name as text any widget or log line can show, one-to-one with the OS's bytes.

    A name that is not valid UTF-8 arrives as a str with surrogate escapes (``os.fsdecode``);
    they are shown as ``\\xNN`` (GUI toolkits drop them silently, so ``bad\\xff.dcm`` would
    look like ``bad.dcm``). Everything else is unchanged; the path itself is kept as it was for
    opening the file.
    """
    try:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:  # a lone surrogate that is not an escaped byte
        return text.encode("utf-8", "backslashreplace").decode("utf-8")


# --------------------------------------------------------------------------------------------
# Writing: private to the user
# --------------------------------------------------------------------------------------------
def private_dir(path: PathType) -> Path:
    """Create ``path`` (and missing parents) as 0700 folders, and return it.

    An existing folder is tightened to 0700 when it is this user's and more open (an older
    version, or a umask of 022, created it readable by everyone). Parents that already exist
    are left alone: they are the user's own folders (``~/.cache``), not PneumoView's.
    """
    folder = Path(path)
    missing: list[Path] = []
    probe = folder
    while not probe.exists() and probe != probe.parent:
        missing.append(probe)
        probe = probe.parent
    for p in reversed(missing):
        with contextlib.suppress(FileExistsError):
            os.mkdir(p, PRIVATE_DIR_MODE)
        _chmod_own(p, PRIVATE_DIR_MODE)  # mkdir's mode is masked by the umask
    if not missing:
        _chmod_own(folder, PRIVATE_DIR_MODE)
    return folder


def _chmod_own(path: Path, mode: int) -> None:
    """``chmod`` when the path is ours and its mode differs (never through a symlink)."""
    try:
        st = os.lstat(path)
    except OSError:
        return
    if stat.S_ISLNK(st.st_mode) or stat.S_IMODE(st.st_mode) == mode:
        return
    if hasattr(os, "getuid") and st.st_uid != os.getuid():
        return
    with contextlib.suppress(OSError):
        os.chmod(path, mode)


def _open_private(path: Path, flags: int) -> int:
    fd = os.open(path, flags | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0),
                 PRIVATE_FILE_MODE)
    if hasattr(os, "fchmod"):
        try:
            os.fchmod(fd, PRIVATE_FILE_MODE)  # the mode above is masked by the umask
        except OSError:
            os.close(fd)
            raise
    return fd


def create_private_file(path: PathType) -> Path:
    """Make sure ``path`` exists as a 0600 file (its folder 0700) without changing its content.

    For files another library opens itself (SQLite creates its database with the umask's mode,
    and its journal files with the database's mode).
    """
    target = Path(path)
    private_dir(target.parent)
    os.close(_open_private(target, os.O_WRONLY | os.O_CREAT))
    return target


def write_private_file(path: PathType, data: bytes | str) -> Path:
    """Write ``data`` to ``path`` atomically (temp file + rename), 0600 in a 0700 folder.

    The one way PneumoView writes its own stores (settings, caches, reviews, annotations,
    retrieved studies, compiled models): a reader never sees half a file and no other local
    user can read it, whatever the umask. ``str`` is written as UTF-8.
    """
    target = Path(path)
    private_dir(target.parent)
    payload = data.encode("utf-8") if isinstance(data, str) else bytes(data)
    tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    with contextlib.suppress(FileNotFoundError):
        os.unlink(tmp)
    fd = _open_private(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(payload)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return target


# --------------------------------------------------------------------------------------------
# Reading: small regular files only
# --------------------------------------------------------------------------------------------
def read_small_file(path: PathType, limit: int = SMALL_FILE_LIMIT) -> bytes:
    """The bytes of ``path`` if it is a regular file of at most ``limit`` bytes.

    Opened without blocking (a FIFO with no writer would block ``open`` forever), then checked
    with ``fstat`` on the open file (no race with a swap between check and read), and read no
    further than the limit (a file that grows, or ``/dev/zero``, cannot exhaust memory).
    ``FileNotFoundError`` passes through (callers treat a missing file as "defaults"); every
    other problem is a :class:`PneumoViewError` naming the file.
    """
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0) \
        | getattr(os, "O_BINARY", 0)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise PneumoViewError(f"cannot open the file ({exc.strerror or exc})", path) from exc
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise PneumoViewError("is not a regular file (a FIFO, device, socket or folder); "
                                  "refused", path)
        if st.st_size > limit:
            raise PneumoViewError(f"is {st.st_size} bytes, more than the {limit} a file of "
                                  "this kind can be; refused", path)
        chunks: list[bytes] = []
        total = 0
        while total <= limit:
            chunk = os.read(fd, min(1 << 20, limit + 1 - total))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
        if total > limit:
            raise PneumoViewError(f"grew past {limit} bytes while being read; refused", path)
        return b"".join(chunks)
    except OSError as exc:
        raise PneumoViewError(f"cannot read the file ({exc.strerror or exc})", path) from exc
    finally:
        os.close(fd)
