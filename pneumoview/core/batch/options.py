"""What a batch run is asked (:class:`BatchOptions`), what it reports while it runs
(:class:`BatchProgress`) and how it ended (:class:`BatchSummary`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from os import PathLike
from typing import Any

from pneumoview.core import defaults
from pneumoview.core.batch.decode import DECODE_TARGET
from pneumoview.core.gatepolicy import GateMode


@dataclass
class BatchOptions:
    """What to flag and how; the CLI flags map one to one."""

    root: str | PathLike[str]
    output: str | PathLike[str] | None = None
    model_dir: str | PathLike[str] | None = None
    device: str = defaults.DEVICE
    engine: str = defaults.ENGINE
    precision: str = defaults.PRECISION
    threshold: float | None = None
    batch_size: int = defaults.BATCH_SIZE
    workers: int | None = None
    resume: bool = False
    overwrite: bool = False
    shard: tuple[int, int] | None = None
    timeout_s: float = defaults.DECODE_TIMEOUT_S
    memory_limit_mb: int | None = -1  # MiB; -1: defaults.memory_limit_mib(workers); None/0: none
    max_image_mib: int = defaults.MAX_IMAGE_MIB  # size guard, MiB
    decode_target: str = DECODE_TARGET
    follow_symlinks: bool = True
    nice: int = defaults.DECODE_WORKER_NICE  # >0 lowers the decode workers' priority
    retry_errors: bool = True  # --resume scores each file of an `error` row once more
    reduced_decode: bool = defaults.REDUCED_DECODE  # JPEG films DCT-scaled for the model
    quiet: bool = False  # no warnings from the decoders on stderr (pydicom's, numpy's)
    profile: str | PathLike[str] | None = None  # a site profile (calibration + threshold)
    gate_mode: GateMode = GateMode.CONTENT  # TAGS_ONLY: --no-gate (the tag gate alone)
    #: error rows about what is no file under ``root`` (the listener's network incidents,
    #: ``path``/``relpath``/``message``/``sop_instance_uid``): written by every run, since a
    #: resumed report keeps only the rows of files it finds
    extra_rows: tuple[dict[str, Any], ...] = ()


@dataclass
class BatchProgress:
    done: int
    total: int
    scored: int
    flagged: int
    not_scored: int
    skipped: int
    errors: int
    elapsed_s: float
    rate: float  # files per second in this run
    eta_s: float | None
    phase: str = "flagging"  # "scanning" | "loading model" | "flagging" | "finished"


@dataclass
class BatchSummary:
    """How a run ended. ``counts`` and ``flagged`` are the whole report's (rows kept from a
    resumed report included); ``run_counts`` and ``run_flagged`` this run's rows alone."""

    root: str
    output: str | None
    manifest: str | None
    total: int
    done: int
    resumed: int
    counts: dict[str, int]
    flagged: int
    cancelled: bool
    finished: bool
    elapsed_s: float
    rate: float
    model_label: str
    model_sha256: str
    threshold: float
    workers: int
    restarts: int
    stage_cpu_s: dict[str, float] = field(default_factory=dict)
    run_counts: dict[str, int] = field(default_factory=dict)
    run_flagged: int = 0
    retried: int = 0  # error rows of the resumed report scored again
    unlisted_folders: int = 0  # folders that could not be listed (each an error row)
    engine: str = ""  # the engine and precision that ran: "openvino f32 on cpu"
    policy: str = ""  # which threshold(s) applied and where from (ScoringPolicy.describe)
    gate: str = "tags"  # the manifest's gate: "content" (tag + content gate) or "tags"
    gate_note: str = ""  # gatepolicy.gate_note: why a run was gated by tags alone
