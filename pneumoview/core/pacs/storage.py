"""Receiving objects (C-GET's sub-operations and the Storage SCP share it): which storage
classes and transfer syntaxes are offered, and the C-STORE handler that files what arrives.

What arrives is written byte for byte as received (pynetdicom's encoded dataset with its file
meta), named by the Affected SOP Instance UID of the request, atomically and privately; it is
not decoded here, so a malformed dataset is kept for the batch engine to report (an error
row) rather than lost.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydicom import uid as uids
from pynetdicom import build_context

from pneumoview.core.errors import PneumoViewError

#: Storage classes a chest radiograph study holds (images, AI results, presentation states,
#: reports): few enough that the C-GET context fits beside them (128 at most).
STORAGE_CLASSES = (
    uids.ComputedRadiographyImageStorage, uids.DigitalXRayImageStorageForPresentation,
    uids.DigitalXRayImageStorageForProcessing, uids.SecondaryCaptureImageStorage,
    uids.MultiFrameGrayscaleByteSecondaryCaptureImageStorage,
    uids.MultiFrameGrayscaleWordSecondaryCaptureImageStorage,
    uids.MultiFrameTrueColorSecondaryCaptureImageStorage, uids.CTImageStorage,
    uids.EnhancedCTImageStorage, uids.MRImageStorage, uids.UltrasoundImageStorage,
    uids.XRayAngiographicImageStorage, uids.DigitalMammographyXRayImageStorageForPresentation,
    uids.BasicTextSRStorage, uids.EnhancedSRStorage, uids.ComprehensiveSRStorage,
    uids.Comprehensive3DSRStorage, uids.KeyObjectSelectionDocumentStorage,
    uids.GrayscaleSoftcopyPresentationStateStorage, uids.EncapsulatedPDFStorage,
    uids.SegmentationStorage, uids.RawDataStorage,
)
#: Uncompressed first, then the lossless and lossy codecs PneumoView decodes.
TRANSFER_SYNTAXES = (
    uids.ExplicitVRLittleEndian, uids.ImplicitVRLittleEndian, uids.DeflatedExplicitVRLittleEndian,
    uids.JPEGBaseline8Bit, uids.JPEGExtended12Bit, uids.JPEGLosslessSV1, uids.JPEGLossless,
    uids.JPEG2000Lossless, uids.JPEG2000, uids.JPEGLSLossless, uids.JPEGLSNearLossless,
    uids.RLELossless,
)
#: C-STORE statuses the handler answers with.
SUCCESS = 0x0000
OUT_OF_RESOURCES = 0xA700
CANNOT_UNDERSTAND = 0xC000


#: Loggers that would write identifiers at DEBUG/INFO level: pynetdicom logs C-FIND
#: identifiers (patient names and IDs), dicomweb-client and urllib3 log query URLs
#: (``?PatientID=...``). Kept at WARNING: protocol errors only.
IDENTIFYING_LOGGERS = ("pynetdicom", "dicomweb_client", "urllib3.connectionpool")


def quiet_identifying_logs() -> None:
    """No patient data in logs: pynetdicom's message dumps off, the loggers above at WARNING."""
    import logging

    from pynetdicom import _config

    _config.LOG_HANDLER_LEVEL = "none"
    for name in IDENTIFYING_LOGGERS:
        logger = logging.getLogger(name)
        if logger.level < logging.WARNING:  # NOTSET too: a DEBUG root must not reach them
            logger.setLevel(logging.WARNING)


quiet_identifying_logs()


def retrieve_contexts() -> list[Any]:
    return [build_context(c, list(TRANSFER_SYNTAXES)) for c in STORAGE_CLASSES]


def uid_digest(uid: str) -> str:
    """A short digest of a UID, for logs: it lets one match log lines without the log
    holding identifiers of a patient's images."""
    return hashlib.sha256(uid.encode("ascii", "replace")).hexdigest()[:12]


def store_handler(out: Path, outcome: Any,
                  on_stored: Callable[[Path, Any], None] | None = None,
                  on_refused: Callable[[str, Any], None] | None = None,
                  staging: Path | None = None) -> Callable[[Any], int]:
    """An EVT_C_STORE handler writing into ``out`` (through ``staging``, see
    :func:`output.write_raw`); appends to ``outcome.done``/``failed``."""
    from pneumoview.core.dicomout.output import write_raw

    def handle(event: Any) -> int:
        uid = str(getattr(event.request, "AffectedSOPInstanceUID", "") or "")
        try:
            data = event.encoded_dataset(include_meta=True)
            path = write_raw(data, uid, out, staging)
        except PneumoViewError as exc:
            outcome.failed.append((uid_digest(uid), exc.reason))
            if on_refused is not None:
                on_refused(exc.reason, event)
            return CANNOT_UNDERSTAND
        except (OSError, ValueError, AttributeError) as exc:
            reason = f"cannot file the object ({type(exc).__name__})"
            outcome.failed.append((uid_digest(uid), reason))
            if on_refused is not None:
                on_refused(reason, event)
            return OUT_OF_RESOURCES
        outcome.done.append(str(path))
        if on_stored is not None:
            on_stored(path, event)
        return SUCCESS

    return handle
