"""Every default of a run, written once: the size guard, batch size, time and memory limits.

The command line's help texts, the settings file's defaults, the batch engine and the viewer's
decoder all read them from here, and :mod:`pneumoview.core.runoptions` resolves what a user
chose over them (command line, then settings, then these). Rules that depend on the machine
(how many decode workers, how much memory each may take) are functions here too.
"""

from __future__ import annotations

import os

MIB = 2**20

#: Size guard: an image whose decoded pixels (all frames) need more than this is refused
#: before anything is allocated (the viewer also counts its display copies against it).
MAX_IMAGE_MIB = 1024
MAX_IMAGE_BYTES = MAX_IMAGE_MIB * MIB

#: Model device preference: "auto" picks CUDA, then MPS, then the CPU.
DEVICE = "auto"

#: Inference engine and precision preferences: "auto" keeps a GPU on torch, runs OpenVINO on
#: the CPU (bf16 only where the CPU has it natively); the rules are
#: :mod:`pneumoview.core.engines.base`'s.
ENGINE = "auto"
PRECISION = "auto"

#: Decode JPEG baseline films for the model at a DCT-scaled reduced size (a batch run's model
#: path only; the viewer always decodes in full). Off: it moves probabilities by up to 0.010,
#: over the 0.005 goal (:mod:`pneumoview.core.reduceddecode`).
REDUCED_DECODE = False

#: Images per model batch in a batch run.
BATCH_SIZE = 32

#: Per-file decode time limit of a batch run (a hung codec costs one row, not the run).
DECODE_TIMEOUT_S = 120.0
#: The viewer waits this long for one frame from its decode process before giving up.
VIEWER_DECODE_TIMEOUT_S = 60.0
#: A decode worker that is not ready (imports done) within this is a fatal pool error.
WORKER_START_TIMEOUT_S = 120.0

#: Decode workers run this much below normal priority, in the GUI (so the viewer's own
#: decoding is served first) and in ``flag`` alike: the model's batch is the pipeline's one
#: serial step, and decoders that preempt it idle the other core; they have a queue of slack.
#: (``bench_batch``, 500 uncompressed 1024 px films, int8, 2 cores, three interleaved runs on
#: 2026-12-03: 89.6, 95.6, 78.0 img/s at nice 0 against 103.1, 97.5, 103.2 at nice 10.)
DECODE_WORKER_NICE = 10
GUI_WORKER_NICE = DECODE_WORKER_NICE

#: CAM overlay opacity in percent.
CAM_OPACITY_PERCENT = 60

#: PACS: this node's AE title, the network time limit of every association or request, the
#: address and port `listen` binds (loopback: a network service is opened only on request).
CALLING_AE = "PNEUMOVIEW"
PACS_TIMEOUT_S = 30
LISTEN_HOST = "127.0.0.1"
LISTEN_PORT = 11112

#: Address-space limit per decode worker, at most and at least. The largest image opened by
#: default (1 GiB of stored pixels) needs about 3.5 GiB once converted to float32 and
#: resized; imports take ~0.5 GiB.
MEMORY_LIMIT_MAX_MIB = 6144
MEMORY_LIMIT_MIN_MIB = 1024


def memory_limit_mib(workers: int) -> int:
    """``min(6 GiB, RAM / (workers + 1))``, at least 1 GiB: N runaway decoders together cannot
    take the machine's memory (the +1 leaves room for the model process)."""
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // MIB
    except (AttributeError, ValueError, OSError):
        return MEMORY_LIMIT_MAX_MIB
    return int(max(MEMORY_LIMIT_MIN_MIB, min(MEMORY_LIMIT_MAX_MIB,
                                             total // (max(1, workers) + 1))))


def decode_workers() -> int:
    """Decode worker processes of a batch run: one per core.

    With a fast CPU engine (OpenVINO) decoding and preparing a film costs about twice the
    model's time, so the decoders need more than cores minus one; with a slow model they wait
    on its back-pressure and leave the cores to it (the model's threads are the cores minus
    the busy workers, :mod:`pneumoview.core.threads`).
    """
    from pneumoview.core.threads import cpu_count

    return cpu_count()
