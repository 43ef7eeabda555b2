"""Batch flagging of a whole folder: the one engine behind ``pneumoview flag`` and the GUI panel.

A pipeline, not a loop: worker processes (:mod:`pneumoview.core.procpool`) read, gate, decode and
prepare files (contract steps 1-4) while the main process runs one hot model on batches of ready
inputs. Decoding in separate processes gives real parallelism (pydicom and numpy hold the GIL for
much of a decode) and isolation: a codec that segfaults, hangs or eats memory costs one ``error``
row and a worker restart, never the run.

Torch's thread count follows the one rule in :mod:`pneumoview.core.threads`: cores minus the
other busy workers. The decode workers are declared busy by how busy they really were over the
last batches (the time-averaged number of workers with a task), so torch gets most cores when
the model is the bottleneck and leaves cores to the decoders when decoding is; busy GUI workers
(the viewer's own decode) are counted too, so the viewer comes first.

The report (:mod:`pneumoview.core.report`) gets one row per file found under the folder, written
and flushed as results arrive. Nothing here imports Qt, and torch only once a model is loaded.

The modules: :mod:`~.options` (what is asked, progress, summary), :mod:`~.decode` (the worker
side: one file to a model input), :mod:`~.scan` (the files of a run), :mod:`~.run`
(:class:`BatchRun`, whose methods are the phases, and :func:`run_batch`).
"""

from pneumoview.core.batch.decode import DECODE_TARGET, decode_task, silence_warnings
from pneumoview.core.batch.options import BatchOptions, BatchProgress, BatchSummary
from pneumoview.core.batch.run import BatchRun, run_batch
from pneumoview.core.batch.scan import ScanCancelled, ScanIssue, scan

__all__ = [
    "DECODE_TARGET", "BatchOptions", "BatchProgress", "BatchRun", "BatchSummary",
    "ScanCancelled", "ScanIssue", "decode_task", "run_batch", "scan", "silence_warnings",
]
