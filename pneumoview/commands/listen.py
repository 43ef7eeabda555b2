"""``pneumoview listen --port P --ae-title AET --out DIR [--flag REPORT.csv] [--dicom-out DIR2]
[--forward NODE]``: a Storage SCP that files what arrives and scores it.

Binds to 127.0.0.1 unless ``--host`` (or the ``listen_host`` setting) says otherwise; accepts
only the calling AE titles of ``--allow-ae`` and the ``listen_allowed_aes`` setting (or every
one with ``--allow-any-ae``). The audit log (``--audit-log``, default in the user's data
folder) records what was received, refused, scored and sent, without patient data; the same
lines go to stderr. Runs until SIGINT or SIGTERM (exit 0).
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path

from pneumoview.commands.console import say
from pneumoview.commands.pacs_common import add_connection_arguments, connection
from pneumoview.core import defaults


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--port", type=int, default=defaults.LISTEN_PORT, metavar="P",
                        help=f"TCP port (default {defaults.LISTEN_PORT})")
    parser.add_argument("--ae-title", default=defaults.CALLING_AE, metavar="AET",
                        help=f"this SCP's AE title (default {defaults.CALLING_AE})")
    parser.add_argument("--out", required=True, metavar="DIR",
                        help="folder for received objects (private, one file per object)")
    parser.add_argument("--host", metavar="ADDR",
                        help="address to bind (default: settings listen_host, else 127.0.0.1)")
    parser.add_argument("--allow-ae", action="append", default=[], metavar="AET",
                        help="a calling AE title to accept (repeatable; added to the setting)")
    parser.add_argument("--allow-any-ae", action="store_true",
                        help="accept every calling AE title (not recommended)")
    parser.add_argument("--flag", metavar="REPORT.csv",
                        help="score each received image into this report (batch engine)")
    parser.add_argument("--dicom-out", metavar="DIR2",
                        help="with --flag: write an SR and a Secondary Capture per scored "
                             "image here")
    parser.add_argument("--forward", metavar="NODE",
                        help="with --dicom-out: send the results to this node")
    parser.add_argument("--model", metavar="DIR", help="model folder (default: bundled)")
    parser.add_argument("--device", default="auto", metavar="D")
    parser.add_argument("--retain-days", type=float, metavar="N",
                        help="delete received files older than N days")
    parser.add_argument("--tls-cert", metavar="PEM", help="DICOM TLS: certificate (PEM)")
    parser.add_argument("--tls-key", metavar="PEM", help="DICOM TLS: private key (PEM)")
    parser.add_argument("--audit-log", metavar="FILE", help="audit log (JSON lines)")
    add_connection_arguments(parser)


def _check(args: argparse.Namespace) -> str | None:
    if args.dicom_out and not args.flag:
        return "--dicom-out goes with --flag"
    if args.forward and not args.dicom_out:
        return "--forward goes with --dicom-out"
    if bool(args.tls_cert) != bool(args.tls_key):
        return "--tls-cert and --tls-key go together"
    if args.retain_days is not None and not args.retain_days > 0:
        return "--retain-days must be more than 0"
    if not 0 <= args.port < 65536:
        return "--port must be from 0 to 65535"
    return None


def build_service(args: argparse.Namespace):
    from pneumoview.core.dicomout.output import check_output_folder, is_inside
    from pneumoview.core.errors import PneumoViewError
    from pneumoview.core.pacs.audit import AuditLog
    from pneumoview.core.pacs.listen import ListenService, ScoreOptions
    from pneumoview.core.pacs.nodes import parse_node
    from pneumoview.core.pacs.scp import ServerOptions
    from pneumoview.core.runoptions import resolve_network
    from pneumoview.core.settings import load_settings

    settings = load_settings()
    network = resolve_network(args, settings)
    out = check_output_folder(args.out, settings.recent_folders)
    allowed = tuple(dict.fromkeys([*settings.listen_allowed_aes, *args.allow_ae]))
    server = ServerOptions(out=out, ae_title=args.ae_title, port=args.port,
                           host=network.host,
                           allowed_aes=allowed, allow_any_ae=args.allow_any_ae,
                           tls_cert=args.tls_cert, tls_key=args.tls_key,
                           timeout_s=float(network.timeout_s),
                           retain_days=args.retain_days)
    score = None
    if args.flag:
        report = Path(args.flag).absolute()
        if is_inside(report, out):
            raise PneumoViewError("the report must not be inside --out (it is scanned)", report)
        dicom_out = check_output_folder(args.dicom_out, [out]) if args.dicom_out else None
        score = ScoreOptions(report=report, model_dir=args.model, device=args.device,
                             dicom_out=dicom_out,
                             forward=parse_node(args.forward) if args.forward else None,
                             connection=connection(args))
    audit = AuditLog(Path(args.audit_log) if args.audit_log else None, echo=sys.stderr)
    return ListenService(server, score, audit)


def run(args: argparse.Namespace) -> int:
    from pneumoview.core.errors import PneumoViewError

    err = sys.stderr
    problem = _check(args)
    if problem:
        say(f"pneumoview listen: error: {problem}", err)
        return 2
    try:
        service = build_service(args)
        service.start()
    except PneumoViewError as exc:
        say(f"pneumoview listen: error: {exc}", err)
        return 2
    stop = threading.Event()
    old = {s: signal.signal(s, lambda *_: stop.set()) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        while not stop.wait(0.5):
            pass
    finally:
        service.stop()
        for s, handler in old.items():
            signal.signal(s, handler)
    return 0
