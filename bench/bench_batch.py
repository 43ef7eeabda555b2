"""Batch flagging throughput against its ceiling, the naive loop and the bare model, in one run.

    python -m bench.bench_batch [--n 500] [--sets uncompressed,mixed] [--data-dir DIR]
                                [--model DIR] [--batch-size 32] [--workers N] [--json OUT]
                                [--engine auto|torch|openvino] [--precision P]
                                [--torch-baseline]

For each set (>= 500 generated 1024x1024 chest radiographs: 8-bit uncompressed, and mixed
encodings - explicit/implicit 8-bit, 12-bit with rescale, RLE, JPEG-LS, JPEG 2000, JPEG
baseline) it measures, on the same machine in the same run:

* PneumoView's batch rate (``run_batch``: decode worker processes + batched inference);
* the naive loop: the same ``decode_task`` (decode, gates, contract) and the same model in one
  process, one file at a time, model at batch 1, torch threads = all cores (the most the rule
  ever gives the model);
* the model-only batched forward rate on ready inputs (all cores), measured before and after
  each set's batch run (the mean is that set's baseline: the VM's speed drifts);
* per-stage CPU seconds per image (decode, and input: the contract plus the content gate's
  statistics where flag computes them, both from the naive pass; model from the model-only
  pass) and the ceiling ``cores / sum of CPU s per image``.

Ratios printed: batch / ceiling (goal >= 85 %), batch / model-only (goal >= 80 % on the
uncompressed set), batch / naive. Without ``--model`` the bundled model is used, or a random
model in the same format when none is bundled (the speed is the same). Module-level imports are
kept to the standard library: the decode workers re-import this script when they start.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
SHARED = REPO.parent / "shared" / "data"


# --------------------------------------------------------------------------------------------
# Data


def _base_images(n_bases: int, size: int):
    """Real chest radiographs (NIH, 512^2) upscaled to ``size``; synthetic when absent."""
    import numpy as np
    from PIL import Image

    pngs = sorted((SHARED / "nih" / "images").glob("*.png"))[:n_bases]
    out = []
    for p in pngs:
        with Image.open(p) as im:
            out.append(np.asarray(im.convert("L").resize((size, size), Image.Resampling.BILINEAR)))
    rng = np.random.default_rng(0)
    while len(out) < n_bases:
        base = rng.integers(0, 256, (size // 32, size // 32)).astype(np.float32)
        img = np.asarray(Image.fromarray(base, mode="F").resize((size, size),
                                                                Image.Resampling.BICUBIC))
        out.append(np.clip(img + rng.normal(0, 6, img.shape), 0, 255).astype(np.uint8))
    return out


ENCODINGS_MIXED = ("explicit8", "implicit8", "rescale12", "rle", "jpegls", "j2k", "jpeg")


def _write(arr, encoding: str, path: Path) -> None:
    import io

    import pydicom
    from PIL import Image
    from pydicom.encaps import encapsulate
    from pydicom.uid import (
        ExplicitVRLittleEndian,
        ImplicitVRLittleEndian,
        JPEG2000Lossless,
        JPEGBaseline8Bit,
        JPEGLSLossless,
        RLELossless,
    )

    from tests.support.dicom_factory import make_dataset, rescaled_12bit_twin

    if encoding == "rescale12":
        ds = rescaled_12bit_twin(arr)
    else:
        ds = make_dataset(arr, syntax=ImplicitVRLittleEndian if encoding == "implicit8"
                          else ExplicitVRLittleEndian)
    ds.ViewPosition = "PA"
    ds.BodyPartExamined = "CHEST"
    if encoding in ("rle", "jpegls", "j2k"):
        syntax = {"rle": RLELossless, "jpegls": JPEGLSLossless, "j2k": JPEG2000Lossless}[encoding]
        ds.compress(syntax)
    elif encoding == "jpeg":
        buf = io.BytesIO()
        Image.fromarray(arr).save(buf, format="JPEG", quality=90)
        ds.PixelData = encapsulate([buf.getvalue()])
        ds["PixelData"].VR = "OB"
        ds.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
        ds.is_implicit_VR = False
        ds.is_little_endian = True
    ds.save_as(path, enforce_file_format=True)
    assert pydicom.dcmread(path, stop_before_pixels=True) is not None


def make_set(folder: Path, name: str, n: int, size: int) -> Path:
    """Generate (once; reused when complete) ``n`` files of ``size``^2 for a set."""
    import numpy as np

    target = folder / f"{name}-{n}-{size}"
    done = folder / f"{target.name}.complete"  # outside the set: the batch would count it
    if done.exists():
        return target
    target.mkdir(parents=True, exist_ok=True)
    bases = _base_images(min(n, 50), size)
    rng = np.random.default_rng(1)
    t0 = time.perf_counter()
    for i in range(n):
        arr = bases[i % len(bases)]
        # a little noise so no two files are byte-identical (codecs must do real work)
        noisy = np.clip(arr.astype(np.int16) + rng.integers(-2, 3, arr.shape), 0, 255)
        enc = "explicit8" if name == "uncompressed" else ENCODINGS_MIXED[i % len(ENCODINGS_MIXED)]
        _write(noisy.astype(np.uint8), enc, target / f"img{i:04d}_{enc}.dcm")
    done.write_text("ok\n")
    print(f"generated {n} files in {target} ({time.perf_counter() - t0:.0f} s)",
          file=sys.stderr)
    return target


# --------------------------------------------------------------------------------------------
# Measurements


def naive_loop(files: list[str], engine, threads_n: int) -> dict:
    """Flag's work on each file (decode, tag gate, contract, the content gate's statistics and
    verdict when the model has that gate) in one process, one file at a time, batch 1."""
    import torch

    from pneumoview.core.batch import decode_task

    torch.set_num_threads(threads_n)
    size = engine.info.input_size
    gating = engine.content_gate_active  # what flag's decode workers are asked for
    cpu = {"decode": 0.0, "input": 0.0}
    scored = 0
    t0 = time.perf_counter()
    for path in files:
        res = decode_task({"path": path, "file_size": os.path.getsize(path),
                           "input_size": size, "input_contract": engine.info.input_contract,
                           "gate_statistics": gating})
        cpu["decode"] += res["cpu_decode_s"]
        cpu["input"] += res["cpu_input_s"]
        if res["status"] == "scored":
            engine.gated_logits([res["input"]], [res["shape"]],
                                [res.get("gate_statistics")])
            scored += 1
    wall = time.perf_counter() - t0
    return {"rate": len(files) / wall, "wall_s": wall, "scored": scored,
            "decode_cpu_s_per_img": cpu["decode"] / len(files),
            "input_cpu_s_per_img": cpu["input"] / len(files)}


def model_only(engine, batch_size: int, threads_n: int, seconds: float = 8.0) -> dict:
    import numpy as np
    import torch

    torch.set_num_threads(threads_n)
    size = engine.info.input_size
    rng = np.random.default_rng(0)
    inputs = [rng.random((size, size), dtype=np.float32) for _ in range(batch_size)]
    engine.logits(inputs)  # warm-up
    n, t0, c0 = 0, time.perf_counter(), time.process_time()
    while time.perf_counter() - t0 < seconds:
        engine.logits(inputs)
        n += batch_size
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    return {"rate": n / wall, "cpu_s_per_img": cpu / n, "threads": threads_n}


def batch_run(folder: Path, model_dir: Path | None, batch_size: int, workers: int | None,
              out: Path, engine: str = "auto", precision: str = "auto") -> dict:
    from pneumoview.core.batch import BatchOptions, run_batch

    if out.exists():
        out.unlink()
    t0 = time.perf_counter()
    s = run_batch(BatchOptions(folder, out, model_dir=model_dir, device="cpu",
                               batch_size=batch_size, workers=workers, overwrite=True,
                               engine=engine, precision=precision))
    wall = time.perf_counter() - t0
    return {"rate": s.rate, "wall_s": wall, "files": s.done, "counts": s.counts,
            "workers": s.workers, "restarts": s.restarts,
            "stage_cpu_s": s.stage_cpu_s, "engine": s.engine}


def _inside_line(b: dict, cores: int) -> str:
    """The stages' CPU per film inside the batch run, where the model and the decode workers
    share the cores and their caches (what the ceiling's isolated figures leave out)."""
    stage = b.get("stage_cpu_s") or {}
    if not stage or not b.get("files"):
        return ""
    ms = {k: stage.get(k, 0.0) / b["files"] * 1e3 for k in ("decode", "input", "model")}
    total = sum(ms.values())
    return (f"  CPU s/img inside the batch run: decode {ms['decode']:.1f} ms, input "
            f"{ms['input']:.1f} ms, model {ms['model']:.1f} ms -> {cores} / {total:.1f} ms = "
            f"{cores * 1e3 / total if total else 0:.1f} img/s")


def _model_dir(arg: str | None, scratch: Path) -> Path | None:
    if arg:
        return Path(arg)
    from pneumoview.core.errors import PneumoViewError
    from pneumoview.core.model import read_model_info

    try:
        read_model_info(None)
        return None
    except PneumoViewError:
        from tests.support.model_fixture import make_random_model_dir

        print("no bundled model: using a random model in the same format", file=sys.stderr)
        return make_random_model_dir(scratch / "random-model")


def main() -> int:
    from pneumoview.commands.engineargs import add_engine_arguments

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=500, help="files per set (default 500)")
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--sets", default="uncompressed,mixed")
    parser.add_argument("--data-dir", default=None,
                        help="where generated sets are kept (default: a temp folder)")
    parser.add_argument("--model", default=None)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--workers", type=int, default=None)
    add_engine_arguments(parser)  # flag's own --engine / --precision, for every measurement
    parser.add_argument("--torch-baseline", action="store_true",
                        help="also time torch float32's model-only rate, the reference of "
                             "issue 17's flag goals (flag rate / torch f32 model-only)")
    parser.add_argument("--json", default=None, help="also write the figures as JSON")
    args = parser.parse_args()
    args.engine, args.precision = args.engine or "auto", args.precision or "auto"

    import tempfile

    from bench._common import check_load
    from pneumoview.core.inference import Engine
    from pneumoview.core.procpool import tune_malloc
    from pneumoview.core.threads import cpu_count

    # the same heap settings as `pneumoview flag` for every measurement in this process
    tuned = tune_malloc()
    load = check_load(None)
    cores = cpu_count()
    scratch = Path(args.data_dir or tempfile.mkdtemp(prefix="pv-bench-batch-"))
    scratch.mkdir(parents=True, exist_ok=True)
    model_dir = _model_dir(args.model, scratch)
    engine = Engine(model_dir, "cpu", with_cam=False, engine=args.engine,
                    precision=args.precision)
    info = engine.load()
    results: dict = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                     "malloc_tuned": tuned,
                     "cores": cores, "load_1min": load, "model": info.label,
                     "batch_size": args.batch_size, "n": args.n, "size": args.size, "sets": {}}
    reference = None
    if args.torch_baseline:
        reference = Engine(model_dir, "cpu", with_cam=False, engine="torch", precision="f32")
        reference.load()
    mo = model_only(engine, args.batch_size, cores)
    mo["load_1min_after"] = os.getloadavg()[0]
    results["model_only"] = mo
    print(f"cores {cores}, load {load:.2f}, model {info.label}")
    print(f"model-only batched forward ({args.batch_size}, {cores} threads): "
          f"{mo['rate']:.1f} img/s, {mo['cpu_s_per_img'] * 1e3:.1f} CPU ms/img")
    for name in args.sets.split(","):
        folder = make_set(scratch, name, args.n, args.size)
        files = sorted(str(p) for p in folder.glob("*.dcm"))
        loads = [os.getloadavg()[0]]
        b = batch_run(folder, model_dir, args.batch_size, args.workers,
                      scratch / f"report-{name}.csv", args.engine, args.precision)
        loads.append(os.getloadavg()[0])
        # the model-only rate drifts with the VM's speed: bracket this set's batch run with a
        # second measurement and compare against the mean of the two
        mo_after = model_only(engine, args.batch_size, cores)
        torch_rate = None
        if reference is not None:  # issue 17's reference, right after the batch run
            torch_rate = model_only(reference, args.batch_size, cores)["rate"]
        mo_set = {"rate": (mo["rate"] + mo_after["rate"]) / 2,
                  "cpu_s_per_img": (mo["cpu_s_per_img"] + mo_after["cpu_s_per_img"]) / 2,
                  "before": mo, "after": mo_after}
        nv = naive_loop(files, engine, cores)
        loads.append(os.getloadavg()[0])
        cpu_sum = nv["decode_cpu_s_per_img"] + nv["input_cpu_s_per_img"] + \
            mo_set["cpu_s_per_img"]
        ceiling = cores / cpu_sum
        entry = {"batch": b, "naive": nv, "model_only": mo_set, "ceiling": ceiling,
                 "load_1min": loads, "batch_over_ceiling": b["rate"] / ceiling,
                 "batch_over_model_only": b["rate"] / mo_set["rate"],
                 "batch_over_naive": b["rate"] / nv["rate"], "torch_f32_model_only": torch_rate}
        mo = mo_after
        results["sets"][name] = entry
        print(f"\n[{name}] {len(files)} files {args.size}x{args.size}, {b['workers']} decode "
              f"workers, {b['engine']}, counts {b['counts']}")
        print(f"  CPU s/img: decode {nv['decode_cpu_s_per_img'] * 1e3:.1f} ms, input "
              f"{nv['input_cpu_s_per_img'] * 1e3:.1f} ms"
              f"{' (with the content gate statistics)' if engine.content_gate_active else ''}"
              f", model "
              f"{mo_set['cpu_s_per_img'] * 1e3:.1f} ms -> ceiling {cores} / "
              f"{cpu_sum * 1e3:.1f} ms = {ceiling:.1f} img/s")
        inside = _inside_line(b, cores)
        if inside:
            print(inside)
        print(f"  batch {b['rate']:.1f} img/s | naive {nv['rate']:.1f} img/s | model-only "
              f"{mo_set['rate']:.1f} img/s (before {mo_set['before']['rate']:.1f}, after "
              f"{mo_set['after']['rate']:.1f})")
        print(f"  batch/ceiling {entry['batch_over_ceiling']:.0%} (goal >= 85%) | "
              f"batch/model-only {entry['batch_over_model_only']:.0%}"
              f"{' (goal >= 80%)' if name == 'uncompressed' else ''} | "
              f"batch/naive {entry['batch_over_naive']:.2f}x")
        if torch_rate:
            goal = 2.5 if name == "uncompressed" else 1.5
            print(f"  batch / torch f32 model-only ({torch_rate:.1f} img/s): "
                  f"{b['rate'] / torch_rate:.2f}x (issue 17's goal >= {goal}x)")
        print(f"  1-minute load before/after batch/after naive: "
              f"{' / '.join(f'{x:.2f}' for x in loads)} (other work on the machine skews "
              "the figures when well above 0)")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
