"""The PACS dialog's background work (Qt-free functions a :class:`~pneumoview.qt.workers.Job`
runs): a query, and the retrieval of studies into the user's private cache."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from pneumoview.core.pacs import transfer
from pneumoview.core.pacs.cache import study_folder
from pneumoview.core.pacs.nodes import PacsNode
from pneumoview.core.pacs.query import StudyMatch, StudyQuery

#: Where Send AI Result to PACS keeps what it sends (private; kept for a resend).
OUTBOX = "outbox"


@dataclass
class Retrieved:
    """What a retrieval brought: a folder per study, counts, failures, cancelled or not."""

    folders: list[str] = field(default_factory=list)
    instances: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)
    cancelled: bool = False


def query(node: PacsNode, q: StudyQuery, conn: transfer.Connection,
          cancel: Callable[[], bool]) -> list[StudyMatch]:
    return transfer.find(node, q, conn, cancel)


def retrieve(node: PacsNode, study_uids: Sequence[str], conn: transfer.Connection,
             cancel: Callable[[], bool], progress: Callable[[Any], None]) -> Retrieved:
    """Each study into ``<cache>/retrieved/<StudyInstanceUID>``; ``progress`` gets
    ``(study index, studies, done, total)``."""
    out = Retrieved()
    for i, uid in enumerate(study_uids):
        if cancel():
            out.cancelled = True
            break
        folder = study_folder(uid)
        outcome = transfer.retrieve(node, uid, folder, conn, cancel,
                                    lambda d, t, i=i: progress((i, len(study_uids), d, t)))
        out.instances += len(outcome.done)
        out.failed.extend(outcome.failed)
        if outcome.done:
            out.folders.append(str(folder))
        if outcome.cancelled:
            out.cancelled = True
            break
    return out


def save_and_send(decoded: Any, prediction: Any, cam: Any, info: Any, node: PacsNode,
                  conn: transfer.Connection, scanned: Sequence[str],
                  cancel: Callable[[], bool], progress: Callable[[Any], None]) -> Any:
    """The result on screen as an SR and a Secondary Capture in the private outbox
    (``<cache>/outbox``), then sent to ``node``; the outcome of the send."""
    from pneumoview.core.dicomout.export import write_prediction
    from pneumoview.core.paths import cache_dir

    paths = write_prediction(decoded, prediction, cam, info, cache_dir() / OUTBOX, scanned)
    return transfer.send(node, paths, conn, cancel, lambda d, t: progress((d, t)))
