"""``pneumoview pull --from NODE (--patient-id ID | --study-uid UID | --accession A) --out DIR``:
query (C-FIND or QIDO-RS) and retrieve (C-GET or WADO-RS) the matching studies.

DIR is private to the user (0700, files 0600), holds one ``<SOPInstanceUID>.dcm`` per
instance and nothing else; it must be new, empty or an earlier pull's folder, and never a
folder the viewer has opened or one inside it. Exit 0 when every instance arrived, 1 otherwise.
"""

from __future__ import annotations

import argparse
import sys

from pneumoview.commands.console import say
from pneumoview.commands.pacs_common import (
    add_connection_arguments,
    connection,
    print_failures,
    progress_printer,
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--from", dest="source", required=True, metavar="NODE",
                        help="dicom://AET@HOST:PORT, dicom+tls://... or http(s)://HOST/PATH")
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--patient-id", metavar="ID")
    which.add_argument("--study-uid", metavar="UID")
    which.add_argument("--accession", metavar="A")
    parser.add_argument("--out", required=True, metavar="DIR",
                        help="folder to retrieve into (private; only DICOM files named by "
                             "SOP Instance UID)")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress line")
    add_connection_arguments(parser)


def check_out(out: str) -> None:
    """Refuse an output folder that is a user's own folder or one the viewer scans."""
    from pneumoview.core.dicomout.output import check_output_folder, is_object_folder
    from pneumoview.core.pacs.nodes import PacsError
    from pneumoview.core.settings import load_settings

    check_output_folder(out, load_settings().recent_folders)
    if not is_object_folder(out):
        raise PacsError("--out must be a new or empty folder (or an earlier pull's): it holds "
                        "files that are not retrieved DICOM objects", out)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from pneumoview.core.errors import PneumoViewError
    from pneumoview.core.pacs import transfer
    from pneumoview.core.pacs.nodes import PacsError, parse_node
    from pneumoview.core.pacs.query import StudyQuery

    err = sys.stderr
    try:
        node = parse_node(args.source)
        conn = connection(args)
        query = StudyQuery(patient_id=args.patient_id or "", study_uid=args.study_uid or "",
                           accession=args.accession or "")
        check_out(args.out)
    except PneumoViewError as exc:
        say(f"pneumoview pull: error: {exc}", err)
        return 2
    try:
        studies = transfer.find(node, query, conn)
        say(f"{node.label}: {len(studies)} matching studies", err)
        done, failed = 0, []
        for study in studies:
            outcome = transfer.retrieve(node, study.study_uid, Path(args.out), conn,
                                        progress=progress_printer(err, "retrieved",
                                                                  args.quiet))
            done += len(outcome.done)
            failed.extend(outcome.failed)
    except PacsError as exc:
        say(f"pneumoview pull: {exc}", err)
        return 1
    except KeyboardInterrupt:
        say("pneumoview pull: interrupted; the files retrieved so far are complete", err)
        return 130
    print_failures(failed, err, "pneumoview pull")
    say(f"{done} instances retrieved into {args.out}", err)
    return 0 if not failed and studies else 1
