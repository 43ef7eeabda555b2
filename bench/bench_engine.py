"""Benchmark: the inference engines side by side, model only, ratios against torch float32.

Every engine the CPU can run (torch float32 as the app ran it before the engine seam; OpenVINO
float32; OpenVINO bf16 only where the CPU has native bf16; OpenVINO int8 when the model folder
ships an int8 graph, ``python -m training quantize``) scores the same real chest films,
interleaved round by round so a busy machine slows all of them alike:

* batched throughput (images/s at ``--batch``) and batch-1 latency (median over the films);
* the CAM: Grad-CAM's closed form on the activations of the scoring pass (every engine) against
  the grad-cam package's GradCAM (torch forward + backward, the path the viewer took before);
* the largest logit difference from torch over the films;
* input preparation per stage on 1024 x 1024 images (contract steps 3, 4, 5).

    python -m bench.bench_engine [--model DIR] [--n 64] [--batch 32] [--rounds 3] [--threads 2]

``--int8 N``, for a model folder without an int8 graph, adds OpenVINO int8 quantised here by
NNCF (calibrated on N other films) for comparison; a folder with one times the shipped graph
as the app loads it (``--precision int8``), and ``--int8`` is ignored.

Films: the NIH PNGs of ../shared/data (else a random model's smooth random fields, which time
the same). Goal (issue 17): the fast engine at least 5x torch batched and batch-1 5x lower;
on a CPU without native bf16 (AVX2 only) OpenVINO runs float32 and the goal is out of reach.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"


def films(n: int, size: int) -> list[np.ndarray]:
    """Contract step-4 outputs of ``n`` real films (NIH), or smooth random fields."""
    from pneumoview.core import contract

    paths = sorted((DATA / "nih" / "images").glob("*.png"))[:n]
    out = [contract.model_input(contract.load_plain_image(p), False, size=size) for p in paths]
    rng = np.random.default_rng(0)
    while len(out) < n:
        small = rng.random((8, 8)).astype(np.float32)
        out.append(contract.clip_and_scale(contract.resize_area(
            np.kron(small, np.ones((size // 8 + 1, size // 8 + 1), np.float32)), size)))
    return out


def engines(model_dir: Path | None) -> dict[str, object]:
    from pneumoview.core.engines.openvino_engine import cpu_has_native_bf16, openvino_available
    from pneumoview.core.inference import Engine
    from pneumoview.core.modelinfo import INT8_XML_FILE
    from pneumoview.core.resources import bundled_model_dir

    made = {"torch f32": Engine(model_dir, "cpu", engine="torch")}
    if openvino_available():
        made["openvino f32"] = Engine(model_dir, "cpu", engine="openvino", precision="f32")
        if cpu_has_native_bf16():
            made["openvino bf16"] = Engine(model_dir, "cpu", engine="openvino",
                                           precision="bf16")
        else:
            print("openvino bf16: skipped (this CPU has no native bf16: AMX or AVX512-BF16)")
        if (model_dir or bundled_model_dir()).joinpath(INT8_XML_FILE).is_file():
            made["openvino int8"] = Engine(model_dir, "cpu", engine="openvino",
                                           precision="int8")
    for name, eng in made.items():
        t0 = time.perf_counter()
        eng.load()
        eng.warm_up()
        print(f"{name}: loaded as {eng.engine_text} in {time.perf_counter() - t0:.1f} s")
    return made


class Int8Runner:
    """OpenVINO int8 from NNCF's post-training quantisation of the verified weights' graph,
    made here for a model folder without an int8 graph (see ``--int8``). Calibrated on
    ``calibration`` (contract step-4 outputs of films that are not timed); NNCF's defaults."""

    def __init__(self, model_dir: Path | None, calibration: list[np.ndarray]) -> None:
        import nncf

        from pneumoview.core.engines.base import normalised_batch
        from pneumoview.core.engines.openvino_engine import read_verified_state
        from pneumoview.core.engines.openvino_graph import build_resnet18
        from pneumoview.core.engines.ovimport import import_openvino
        from pneumoview.core.inputgate import split_gate_tensors
        from pneumoview.core.modelinfo import read_model_info

        self.info = read_model_info(model_dir)
        state, _gate = split_gate_tensors(read_verified_state(self.info))
        self.fc_weight = np.asarray(state["fc.weight"], np.float32).reshape(-1)
        self._batch = lambda xs: normalised_batch(xs, self.info)
        t0 = time.perf_counter()
        model = nncf.quantize(build_resnet18(state), nncf.Dataset(
            calibration, lambda x: self._batch([x])), subset_size=len(calibration))
        self.quantise_s = time.perf_counter() - t0
        threads = int(os.environ.get("PNEUMOVIEW_TORCH_THREADS", "2"))
        compiled = import_openvino().Core().compile_model(model, "CPU", {
            "INFERENCE_NUM_THREADS": threads, "NUM_STREAMS": 1, "PERFORMANCE_HINT": "LATENCY",
            "INFERENCE_PRECISION_HINT": "f32"})
        self._request = compiled.create_infer_request()
        self.engine_text = f"openvino int8 (NNCF, {len(calibration)} calibration films)"

    def _forward(self, xs: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        self._request.infer({0: self._batch(xs)})
        return (np.array(self._request.get_output_tensor(0).data, np.float64).reshape(-1),
                np.array(self._request.get_output_tensor(1).data, np.float32))

    def logits(self, xs: list[np.ndarray]) -> np.ndarray:
        return self._forward(xs)[0]

    def cam_from_input(self, x: np.ndarray) -> np.ndarray:
        from pneumoview.core.cam import linear_cam

        return linear_cam(self._forward([x])[1][0], self.fc_weight)


def one_round(eng, xs: list[np.ndarray], batch: int) -> dict[str, float]:  # noqa: ANN001
    t0 = time.perf_counter()
    for i in range(0, len(xs), batch):
        eng.logits(xs[i:i + batch])
    rate = len(xs) / (time.perf_counter() - t0)
    single, cam = [], []
    for x in xs[:16]:
        t1 = time.perf_counter()
        eng.logits([x])
        t2 = time.perf_counter()
        eng.cam_from_input(x)
        single.append(t2 - t1)
        cam.append(time.perf_counter() - t2)
    return {"rate": rate, "b1_ms": 1000 * statistics.median(single),
            "cam_ms": 1000 * statistics.median(cam)}


def gradcam_ms(eng, xs: list[np.ndarray]) -> float:  # noqa: ANN001
    eng.gradcam_from_input(xs[0])
    times = []
    for x in xs[:16]:
        t0 = time.perf_counter()
        eng.gradcam_from_input(x)
        times.append(time.perf_counter() - t0)
    return 1000 * statistics.median(times)


def prep_stages(n: int = 10, side: int = 1024, size: int = 224) -> dict[str, float]:
    """Median ms per stage of the contract on ``side``^2 float32 images."""
    from pneumoview.core import contract

    rng = np.random.default_rng(1)
    image = (rng.random((side, side)) * 4095).astype(np.float32)
    stages = {"resize_area (step 3)": lambda: contract.resize_area(image, size)}
    small = contract.resize_area(image, size)
    stages["clip_and_scale (step 4)"] = lambda: contract.clip_and_scale(small)
    scaled = contract.clip_and_scale(small)
    stages["normalise (step 5)"] = lambda: contract.normalise(scaled, 0.5, 0.25)
    stages["to_grey + float32"] = lambda: contract.to_grey(image.astype(np.uint16))
    out = {}
    for name, fn in stages.items():
        times = []
        for _ in range(n):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
        out[name] = 1000 * statistics.median(times)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, default=None, help="model folder (default: bundled)")
    ap.add_argument("--n", type=int, default=64, help="films (default 64)")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2, help="threads for every engine")
    ap.add_argument("--int8", type=int, default=0, metavar="N",
                    help="for a model without an int8 graph: also time OpenVINO int8 "
                         "quantised here by NNCF on N further films (needs nncf)")
    args = ap.parse_args(argv)
    os.environ["PNEUMOVIEW_TORCH_THREADS"] = str(args.threads)
    from bench._common import check_load
    from pneumoview.core.errors import PneumoViewError

    check_load()
    model_dir = args.model
    try:
        from pneumoview.core.modelinfo import read_model_info

        info = read_model_info(model_dir)
    except PneumoViewError:
        from tests.support.model_fixture import make_random_model_dir

        model_dir = make_random_model_dir(Path(tempfile.mkdtemp()) / "random")
        info = read_model_info(model_dir)
        print("no bundled model: a random model of the same architecture")
    xs = films(args.n, info.input_size)
    made = engines(model_dir)
    if args.int8 and "openvino int8" in made:
        print("openvino int8: the model's own int8 graph is timed (--int8 ignored)")
    elif args.int8:
        calibration = films(args.n + args.int8, info.input_size)[args.n:]
        made["openvino int8"] = int8 = Int8Runner(model_dir, calibration)
        print(f"openvino int8: quantised in {int8.quantise_s:.1f} s ({int8.engine_text})")
    results: dict[str, list[dict[str, float]]] = {name: [] for name in made}
    for r in range(args.rounds):
        for name, eng in made.items():
            results[name].append(one_round(eng, xs, args.batch))
        print(f"round {r + 1}/{args.rounds} done", file=sys.stderr)
    reference = made["torch f32"].logits(xs)
    gc_ms = gradcam_ms(made["torch f32"], xs)
    base = results["torch f32"]
    print(f"\n{len(xs)} films, batch {args.batch}, {args.threads} threads, {args.rounds} "
          "interleaved rounds; ratios are per round against torch f32 of the same round\n")
    print("| engine | img/s (batched) | vs torch | batch-1 ms | batch-1 vs torch | "
          "closed-form CAM ms | max logit diff |")
    print("|---|---|---|---|---|---|---|")
    for name, rows in results.items():
        ratios = [row["rate"] / b["rate"] for row, b in zip(rows, base, strict=True)]
        lat = [b["b1_ms"] / row["b1_ms"] for row, b in zip(rows, base, strict=True)]
        diff = float(np.abs(made[name].logits(xs) - reference).max())
        print(f"| {name} | {statistics.median(r['rate'] for r in rows):.1f} | "
              f"{min(ratios):.2f}-{max(ratios):.2f}x | "
              f"{statistics.median(r['b1_ms'] for r in rows):.1f} | "
              f"{min(lat):.2f}-{max(lat):.2f}x | "
              f"{statistics.median(r['cam_ms'] for r in rows):.1f} | {diff:.2e} |")
    print(f"| grad-cam GradCAM (torch forward + backward, reference) | | | | | {gc_ms:.1f} | |")
    print("\ninput preparation, 1024 x 1024 float32 -> 224 (median ms):")
    for name, ms in prep_stages(size=info.input_size).items():
        print(f"  {name:26s} {ms:7.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
