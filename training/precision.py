"""Which autocast precision a training run uses: bf16 only where it is fast.

bf16 autocast roughly doubles training speed on GPUs with bf16 units and on CPUs with
AVX512-BF16 or AMX, and is about ten times *slower* than float32 on a CPU without them (an
AVX2-only Zen 3 emulates it: 0.6 vs 7.1 img/s for ResNet18 at 224 px). ``auto`` therefore
chooses bf16 on CUDA devices that support it and on CPUs whose flags show native bf16, float32
everywhere else. The choice and its reason are logged and stored with the checkpoint.
"""

from __future__ import annotations

import logging
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

log = logging.getLogger("training.precision")

CHOICES = ("auto", "bf16", "fp32")
_BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")


@dataclass(frozen=True)
class Precision:
    """The autocast decision for one run."""

    dtype: str  # "bf16" or "fp32"
    requested: str  # what the command asked for
    reason: str

    @property
    def autocast(self) -> bool:
        return self.dtype == "bf16"

    def record(self) -> dict:
        return asdict(self)


def cpu_bf16_flags(cpuinfo: str | None = None) -> list[str]:
    """The native-bf16 CPU flags present (Linux ``/proc/cpuinfo``; elsewhere torch's view)."""
    if cpuinfo is None:
        path = Path("/proc/cpuinfo")
        if sys.platform.startswith("linux") and path.is_file():
            try:
                cpuinfo = path.read_text(encoding="utf-8", errors="replace")
            except OSError:
                cpuinfo = ""
        else:
            cap = str(torch.backends.cpu.get_cpu_capability()).lower()
            return ["amx_bf16"] if "amx" in cap else []
    flags: set[str] = set()
    for line in cpuinfo.splitlines():
        if line.startswith("flags"):
            flags.update(line.split(":", 1)[-1].split())
    return [f for f in _BF16_CPU_FLAGS if f in flags]


def choose(requested: str, device: torch.device, cpuinfo: str | None = None) -> Precision:
    """Resolve ``auto`` for ``device``; an explicit ``bf16``/``fp32`` is honoured (logged)."""
    if requested not in CHOICES:
        raise ValueError(f"precision must be one of {', '.join(CHOICES)}")
    if requested != "auto":
        return Precision(requested, requested, "requested explicitly")
    if device.type == "cuda":
        if torch.cuda.is_bf16_supported():
            return Precision("bf16", requested, "CUDA device with bf16 support")
        return Precision("fp32", requested, "CUDA device without bf16 support")
    if device.type == "cpu":
        flags = cpu_bf16_flags(cpuinfo)
        if flags:
            return Precision("bf16", requested, f"CPU has native bf16 ({', '.join(flags)})")
        cap = torch.backends.cpu.get_cpu_capability()
        return Precision("fp32", requested, f"CPU has no AVX512-BF16/AMX (capability {cap}); "
                         "emulated bf16 is slower than float32")
    return Precision("fp32", requested, f"{device.type}: float32")
