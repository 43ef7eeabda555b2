"""The viewer's decoder: bounded like the batch, so no file can close or exhaust the viewer.

Compressed transfer syntaxes are decoded by C and Rust libraries (OpenJPEG, CharLS, GDCM,
libjpeg) fed with bytes nobody checked. A segfault or an abort in one of them ends the process
it runs in; the fuzzing campaigns found no such file for the installed codecs, but GDCM is the
only decoder for JPEG Lossless here and no guarantee exists. Small files can also ask for a lot
of memory: a sparse file of 4 KB on disk declaring a 16384 x 16384 image, a 4 MB deflated file
that inflates to 4 GB. The batch engine decodes in supervised worker processes
(:mod:`pneumoview.core.procpool`); this module gives the viewer the same protection for the
image it opens, with one long-lived worker:

* before anything is allocated, the header is checked against the size guard twice: the
  declared pixel data (all frames, :func:`dicomio.check_decodable`) and what showing one frame
  costs the viewer (:func:`check_view_budget`: stored samples, float32 values and the display
  copies), so a sparse giant is refused with a message, not decoded;
* small native (uncompressed) pixel data is decoded in-process: numpy on a buffer pydicom has
  length-checked, and the common case stays as fast as it was;
* everything else goes to the worker, with a time limit and a memory limit: encapsulated or
  unknown transfer syntaxes, deflated files (inflation is also bounded, see
  :func:`dicomio.read_dataset`) and files whose pixel data is larger than
  :data:`IN_PROCESS_MAX_BYTES` (pydicom reads the whole element to give one frame). A crash,
  hang or runaway allocation there becomes a :class:`PneumoViewError` naming the file, the
  worker is restarted, the viewer carries on.

The worker is started on the first such file (about a second of imports) and kept. The decoded
frame crosses back by pickling (a 1841 x 1955 frame is 14 MB of float32, ~10 ms), small next to
the codecs' own time (50 ms to 1 s for such a frame).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from os import PathLike
from typing import Any

import pydicom.filereader
from pydicom.uid import UID

from pneumoview.core import defaults, dicomio
from pneumoview.core.errors import ImageTooLargeError, PneumoViewError
from pneumoview.core.procpool import ProcessPool, default_memory_limit_mb

#: Native pixel data larger than this (all frames) is decoded in the worker, not in-process.
IN_PROCESS_MAX_BYTES = 128 * 2**20
#: Bytes per sample the viewer holds for a shown frame besides the stored one: float32 modality
#: values, the display copy and the temporaries of preparing it.
VIEW_BYTES_PER_SAMPLE = 12

#: The worker's entry point (``module:function``, imported inside the worker).
TARGET = "pneumoview.core.decoderprocess:decode_payload"
#: A frame the viewer waits for longer than this is given up (the worker is killed, restarted).
DEFAULT_TIMEOUT_S = defaults.VIEWER_DECODE_TIMEOUT_S
#: A cancelled decode is left to finish (its frame is cached for going back) unless it has run
#: this long: killing costs a worker restart (about a second of imports), not worth it for the
#: quick files a reader skips through, worth it for a codec stuck on one file.
KILL_AFTER_S = 2.0

PathType = str | PathLike[str]


def decode_payload(payload: tuple[str, int, int]) -> tuple[bool, Any]:
    """Worker side: ``(True, DecodedImage)`` or ``(False, reason)`` for a refused file.

    The reason travels without the path (the parent adds it), so messages do not repeat it.
    A refusal by the size guard travels as ``(False, (reason, need_bytes, limit_bytes))`` so
    that the parent raises :class:`ImageTooLargeError` again (a front end words its advice
    on the type).
    """
    path, frame, max_bytes = payload
    try:
        header = dicomio.read_header(path)  # a deflated header is inflated only so far
        check_view_budget(header, path, max_bytes)
        return True, dicomio.decode(path, frame, max_bytes=max_bytes, ds=header)
    except ImageTooLargeError as exc:
        return False, (exc.reason, exc.need_bytes, exc.limit_bytes)
    except PneumoViewError as exc:
        return False, exc.reason


def _refusal(value: Any, path: str) -> PneumoViewError:
    """The parent's error for a worker's refusal (see :func:`decode_payload`)."""
    if isinstance(value, tuple) and len(value) == 3:
        reason, need, limit = value
        return ImageTooLargeError(str(reason), path, need_bytes=need, limit_bytes=limit)
    return PneumoViewError(value, path)


def check_view_budget(ds: Any, path: PathType, max_bytes: int) -> None:
    """Refuse, from the header alone, a frame whose display would need more than the guard."""
    dicomio.check_decodable(ds, path, max_bytes)
    rows = dicomio.header_int(ds, "Rows", 0, path)
    cols = dicomio.header_int(ds, "Columns", 0, path)
    samples = dicomio.header_int(ds, "SamplesPerPixel", 1, path) or 1
    stored = max(1, -(-(dicomio.header_int(ds, "BitsAllocated", 16, path) or 16) // 8))
    need = rows * cols * samples * (stored + VIEW_BYTES_PER_SAMPLE)
    if need > max_bytes:
        raise ImageTooLargeError(
            f"image too large to display safely: one {rows}x{cols} frame needs about "
            f"{need / 2**20:.0f} MiB to decode and show, the limit is {max_bytes / 2**20:.0f} "
            "MiB", path,
            need_bytes=need, limit_bytes=max_bytes)


def file_transfer_syntax(path: PathType) -> str | None:
    """The file meta's transfer syntax (group 0002 only: a fraction of a millisecond).

    ``None`` when the file has a preamble but no syntax (pydicom then reads it as implicit
    little endian); ``"unknown"`` when the meta cannot be read (no preamble, damaged): such a
    file is decoded in the worker, to be safe.
    """
    try:
        uid = pydicom.filereader.read_file_meta_info(path).get("TransferSyntaxUID")
    except Exception:  # any failure here only means "decode it in the worker"
        return "unknown"
    return None if uid is None else str(uid)


def is_codec_syntax(uid: str | None) -> bool:
    """Whether a transfer syntax UID needs a codec library (encapsulated, or unknown)."""
    if not uid:
        return False  # pydicom reads such files as implicit little endian: native data
    syntax = UID(str(uid))
    try:
        return not syntax.is_transfer_syntax or bool(syntax.is_encapsulated)
    except (AttributeError, ValueError):
        return True


class IsolatedDecoder:
    """``decode(path, frame, max_bytes)`` that sends compressed files to a worker process.

    Thread-safe (one decode at a time in the worker); :meth:`close` ends the worker and must be
    called by the owner (the viewer does it when its window closes).
    """

    def __init__(self, timeout_s: float = DEFAULT_TIMEOUT_S,
                 memory_limit_bytes: int | None = -1, target: str = TARGET) -> None:
        self.target = target  # tests substitute a decoder that really crashes or hangs
        self.timeout_s = float(timeout_s)
        self.memory_limit = (default_memory_limit_mb(1) * 2**20 if memory_limit_bytes == -1
                             else memory_limit_bytes)
        self._pool: ProcessPool | None = None
        self._lock = threading.Lock()
        self.isolated = 0  # files decoded in the worker (for tests and the log)
        self._closed = False

    def decode(self, path: PathType, frame: int = 0,
               max_bytes: int = dicomio.DEFAULT_MAX_PIXEL_BYTES,
               cancelled: Callable[[], bool] | None = None) -> dicomio.DecodedImage:
        """Decode one frame; compressed files in the worker. Only PneumoViewError escapes.

        ``cancelled`` is polled while the worker runs: when it is true and the decode has run
        for ``KILL_AFTER_S``, the worker is killed (restarted on the next compressed file) and
        the call raises, so a reader who moved on does not wait for a stuck codec.
        """
        syntax = file_transfer_syntax(path)
        header = None
        if not (is_codec_syntax(syntax) or syntax == dicomio.DEFLATED_SYNTAX):
            header = dicomio.read_header(path)
            check_view_budget(header, path, max_bytes)
            if dicomio.declared_pixel_bytes(header, path) <= IN_PROCESS_MAX_BYTES:
                return dicomio.decode(path, frame, max_bytes=max_bytes, ds=header)
        with self._lock:
            return self._decode_isolated(str(path), frame, max_bytes, cancelled)

    def _decode_isolated(self, path: str, frame: int, max_bytes: int,
                         cancelled: Callable[[], bool] | None) -> dicomio.DecodedImage:
        if self._closed:
            raise PneumoViewError("not decoded: the viewer is closing", path)
        pool = self._ensure_pool()
        self.isolated += 1
        started = time.monotonic()
        results = pool.imap_unordered([(path, (path, frame, max_bytes))], poll_s=0.1,
                                             ticks=True)
        try:
            for res in results:
                if res is None:
                    if cancelled is not None and cancelled() \
                            and time.monotonic() - started > KILL_AFTER_S:
                        self._kill()
                        raise PneumoViewError("decoding was cancelled", path)
                    continue
                if not res.ok:
                    raise PneumoViewError(res.message, path)
                ok, value = res.value
                if not ok:
                    raise _refusal(value, path)
                return value
        except RuntimeError as exc:  # the pool was closed under us (close() from another thread)
            raise PneumoViewError(f"decoding was stopped ({exc})", path) from None
        finally:
            results.close()
        raise PneumoViewError("the decode worker returned no result", path)

    def prewarm(self) -> None:
        """Start the worker now, so the first compressed image does not wait for its imports.

        The viewer calls it when a folder with compressed files opens; never blocks (skipped
        when a decode holds the lock).
        """
        if self._closed or not self._lock.acquire(blocking=False):
            return
        try:
            self._ensure_pool().start()
        finally:
            self._lock.release()

    def _ensure_pool(self) -> ProcessPool:
        if self._pool is None:
            self._pool = ProcessPool(self.target, 1, timeout_s=self.timeout_s,
                                     memory_limit_bytes=self.memory_limit)
        return self._pool

    def _kill(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.close(cancel=True)

    def close(self) -> None:
        """End the worker process at once (a decode in flight then raises); safe to repeat.

        Does not wait for the lock: the viewer closes while a slow decode may be running.
        """
        self._closed = True
        self._kill()
