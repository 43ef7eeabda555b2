"""The worker side of a batch run: one file to header facts and the model input.

:func:`decode_task` runs in a decode process (:mod:`pneumoview.core.procpool`); it reads,
gates, decodes and prepares one file (contract steps 1-4) and returns a small dict the main
process turns into a report row. The status is decided from the error's type
(:mod:`pneumoview.core.errors`), never from its text.
"""

from __future__ import annotations

import errno
import time
from typing import Any

from pneumoview.core import defaults
from pneumoview.core.errors import (
    FileAccessError,
    NoPixelDataError,
    NotDicomError,
    PneumoViewError,
)
from pneumoview.core.reportrow import Status

#: The pool target of a batch run's decode workers.
DECODE_TARGET = "pneumoview.core.batch.decode:decode_task"
#: What a decode worker runs once before its first file (:func:`warm_up`).
WARM_TARGET = "pneumoview.core.batch.decode:warm_up"


def _has_dicom_magic(path: str) -> bool:
    try:
        with open(path, "rb") as fh:
            head = fh.read(132)
    except OSError:
        return False
    return len(head) == 132 and head[128:132] == b"DICM"


def _sop_class_name(header: Any) -> str:
    """The SOP class's name ('Digital X-Ray Image Storage - For Presentation'), or ''."""
    import pydicom

    from pneumoview.core.dicomio import header_text

    uid = header_text(header, "SOPClassUID")
    if not uid:
        meta = getattr(header, "file_meta", None)
        uid = header_text(meta, "MediaStorageSOPClassUID") if meta is not None else ""
    if not uid:
        return ""
    name = pydicom.uid.UID(uid).name
    return "" if name == uid else name


def silence_warnings() -> None:
    """No Python warnings on stderr from this process (pydicom warns about odd headers without
    naming the file; the row's message says what matters). For ``--quiet``."""
    import warnings

    warnings.simplefilter("ignore")


def warm_up() -> None:
    """Import what the first file would (pydicom's pixel machinery, the contract, the gates:
    about half a second), while the batch run is still loading its model and scanning."""
    import pydicom.pixels  # noqa: F401
    from PIL import Image  # noqa: F401

    from pneumoview.core import contract, dicomio, gate, inputgate  # noqa: F401


def decode_task(payload: dict[str, Any]) -> dict[str, Any]:
    """Read, gate, decode and prepare one file; runs in a worker process.

    Returns a small dict: ``status`` (scored means "ready for the model"), ``message``, the
    header facts, ``input`` (float32 ``(S, S)`` in [0, 1] or None), per-stage CPU seconds and
    the wall time (``wall_ms``). Only :class:`PneumoViewError` escapes (the pool turns anything
    else into an error row).
    """
    t0 = time.perf_counter()
    if payload.get("quiet"):
        silence_warnings()
    out = _decode_task(payload)
    out["wall_ms"] = (time.perf_counter() - t0) * 1000
    return out


def _decode_task(payload: dict[str, Any]) -> dict[str, Any]:
    from pneumoview.core import contract, dicomio
    from pneumoview.core.gate import not_scorable_reason

    path = str(payload["path"])
    size = int(payload.get("input_size", contract.INPUT_SIZE))
    max_bytes = int(payload.get("max_bytes", defaults.MAX_IMAGE_BYTES))
    c0 = time.process_time()
    out: dict[str, Any] = {"status": Status.ERROR, "message": "", "input": None,
                           "cpu_decode_s": 0.0, "cpu_input_s": 0.0}
    if payload.get("file_size") == 0:
        out.update(status=Status.SKIPPED, message="empty file (0 bytes): not a DICOM file")
        return out
    try:
        # one parse serves the gate and the decoder; pixel data over 16 MB is read only when
        # decoded, so a large image that is refused or over the size guard costs no pixel read
        header = dicomio.read_dataset(path)
    except PneumoViewError as exc:
        not_dicom = isinstance(exc, NotDicomError) or not _has_dicom_magic(path)
        cannot_open = isinstance(exc, FileAccessError) and exc.errno != errno.EISDIR
        if not_dicom and not cannot_open:
            out.update(status=Status.SKIPPED, message="not a DICOM file")
        else:
            out.update(status=Status.ERROR, message=exc.reason)
        out["cpu_decode_s"] = time.process_time() - c0
        return out
    text = dicomio.header_text
    out.update(
        patient_id=text(header, "PatientID"), study_instance_uid=text(header, "StudyInstanceUID"),
        series_instance_uid=text(header, "SeriesInstanceUID"),
        sop_instance_uid=text(header, "SOPInstanceUID"),
        view_position=text(header, "ViewPosition"), study_date=text(header, "StudyDate"),
        modality=text(header, "Modality"), frame=0, patient_age=text(header, "PatientAge"),
        birth_date=text(header, "PatientBirthDate"))
    # header-only gate first: a lateral or a CT is refused without decoding its pixels; only
    # the colour check needs the pixels (a grey film stored as RGB passes)
    reason = not_scorable_reason(header, dicomio.number_of_frames(header))
    if reason and not reason.startswith("colour image"):
        out.update(status=Status.NOT_SCORED, message=reason,
                   cpu_decode_s=time.process_time() - c0)
        return out
    try:
        reduced = _reduced(header, path, size, max_bytes, payload, out)
        if reduced is not None:
            out["cpu_decode_s"] = time.process_time() - c0
            if reason := not_scorable_reason(header, 1):
                out.update(status=Status.NOT_SCORED, message=reason)
                return out
            return _prepare(reduced.values, dicomio.display_inverts(header),
                            reduced.full_shape, size, payload, out)
        decoded = dicomio.decode(path, ds=header, max_bytes=max_bytes)
    except PneumoViewError as exc:
        out.update(status=Status.ERROR, message=exc.reason, cpu_decode_s=time.process_time() - c0)
        if isinstance(exc, NoPixelDataError):
            # nothing to score: fine for a report or a presentation state, but an image
            # object without its pixels is a truncated or corrupt file
            sop = _sop_class_name(header)
            if "Image Storage" in sop:
                out["message"] = f"{exc.reason}: a {sop} object without its image, the file " \
                                 "is probably truncated or corrupt"
            else:
                out.update(status=Status.NOT_SCORED,
                           message=f"not an image object ({sop or 'no pixel data'})")
        return out
    out["cpu_decode_s"] = time.process_time() - c0
    reason = not_scorable_reason(decoded.header, decoded.n_frames, values=decoded.values)
    if reason:
        out.update(status=Status.NOT_SCORED, message=reason)
        return out
    return _prepare(decoded.values, decoded.invert, decoded.shape, size, payload, out)


def _reduced(header: Any, path: str, size: int, max_bytes: int, payload: dict[str, Any],
             out: dict[str, Any]) -> Any:
    """The reduced decode for the model (:mod:`pneumoview.core.reduceddecode`), or None: then
    ``out["decode_mode"]`` says why the film is decoded in full."""
    from pneumoview.core import dicomio, reduceddecode

    if not (payload.get("reduced_decode", defaults.REDUCED_DECODE)
            and dicomio._has_pixels(header)):
        out["decode_mode"] = reduceddecode.Fallback.DISABLED.name
        return None
    dicomio.check_decodable(header, path, max_bytes)
    result = reduceddecode.reduced_model_values(header, size)
    if isinstance(result, reduceddecode.Fallback):
        out["decode_mode"] = result.name
        return None
    out["decode_mode"] = f"reduced 1/{result.scale}"
    return result


def _prepare(values: Any, invert: bool, shape: tuple[int, int], size: int,
             payload: dict[str, Any], out: dict[str, Any]) -> dict[str, Any]:
    """Contract steps 1-4 on decoded (full or reduced) values; ``shape`` is the film's own."""
    from pneumoview.core import contract

    version = str(payload.get("input_contract", contract.INPUT_CONTRACT))
    c1 = time.process_time()
    try:
        x = contract.model_input(values, invert, size=size, version=version)
    except ValueError as exc:
        out.update(status=Status.ERROR, message=f"cannot prepare the image for the model: {exc}")
        return out
    finally:
        out["cpu_input_s"] = time.process_time() - c1
    out.update(status=Status.SCORED, input=x, shape=shape)
    if payload.get("gate_statistics"):
        # the content gate's rules read these; computed here, in parallel, not in the model's
        # process (pure numpy on the model input)
        from pneumoview.core.inputgate import content_statistics

        out["gate_statistics"] = content_statistics(x)
    out["cpu_input_s"] = time.process_time() - c1
    return out
