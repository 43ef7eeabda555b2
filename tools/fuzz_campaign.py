"""Long fuzz campaign: many mutated DICOM files through every core entry point, in parallel.

    python -m tools.fuzz_campaign --cases 10000 --workers 2 --out /tmp/pv-fuzz

Starts ``--workers`` fork servers (``python -m tests.support.fuzzing serve``); each case (a seed
file and an rng seed, drawn deterministically from ``--seed``) is mutated in a server and run in
a forked child under an address-space limit (``--mem-mb`` over the server's own) and a time
bound (``--timeout``). Then ``--batch-runs`` runs of the real ``pneumoview flag`` (and the
indexer) on folders of ``--batch-files`` mutated files check that every file gets exactly one
row.

Writes to ``--out``: ``cases.jsonl`` (one line per case: how it ended, each target's outcome,
wall/CPU time, peak RSS), ``reproducers/`` (the file and record of every failing case),
``summary.json`` and ``summary.md`` (the figures RELIABILITY.md quotes), rewritten every
``--report-every`` cases so a stopped campaign still has its figures.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
from tests.support import fuzzing  # noqa: E402


def _env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PNEUMOVIEW_TORCH_THREADS": "1"}


class Tally:
    """Running figures over all cases."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.n = 0
        self.ends: Counter[str] = Counter()
        self.signals: Counter[str] = Counter()
        self.unexpected: Counter[str] = Counter()
        self.outcomes: Counter[str] = Counter()
        self.mutators: Counter[str] = Counter()
        self.seeds: Counter[str] = Counter()
        self.failing_cases: list[dict[str, Any]] = []
        self.walls: list[float] = []
        self.worst_wall: dict[str, Any] = {}
        self.worst_cpu: dict[str, Any] = {}
        self.worst_rss: dict[str, Any] = {}
        self.worst_extra: dict[str, Any] = {}
        self.decoded = 0
        self.inferred = 0

    def add(self, rec: dict[str, Any]) -> None:
        with self.lock:
            self.n += 1
            self.ends[rec["end"]] += 1
            if rec["end"] == "signal":
                self.signals[rec["signal"]] += 1
            for name, res in rec.get("targets", {}).items():
                self.outcomes[f"{name}:{res['outcome']}"] += 1
                if res["outcome"] in ("unexpected", "wrong"):
                    self.unexpected[f"{name}: {res.get('type', 'wrong result')}"] += 1
            if rec.get("targets", {}).get("decode", {}).get("outcome") == "ok":
                self.decoded += 1
            if "inference" in rec.get("targets", {}):
                self.inferred += 1
            for m in rec.get("mutations", []):
                self.mutators[m.split("(")[0]] += 1
            self.seeds[rec["seed"]] += 1
            if rec["failures"]:
                self.failing_cases.append({k: rec[k] for k in ("seed", "rng", "mutations",
                                                               "failures")})
            self.walls.append(rec["wall_s"])
            brief = {k: rec[k] for k in ("seed", "rng", "mutations", "size", "wall_s", "cpu_s",
                                         "peak_rss_mb", "base_rss_mb")}
            extra = rec.get("growth_mb") or 0.0
            if rec["wall_s"] > self.worst_wall.get("wall_s", -1):
                self.worst_wall = brief
            if rec["cpu_s"] > self.worst_cpu.get("cpu_s", -1):
                self.worst_cpu = brief
            if rec["peak_rss_mb"] > self.worst_rss.get("peak_rss_mb", -1):
                self.worst_rss = brief
            if extra > self.worst_extra.get("extra_mb", -1e9):
                self.worst_extra = {**brief, "extra_mb": round(extra, 1)}

    def summary(self) -> dict[str, Any]:
        with self.lock:
            walls = sorted(self.walls)

            def pct(p: float) -> float:
                return walls[min(len(walls) - 1, int(p * len(walls)))] if walls else 0.0

            return {
                "cases": self.n,
                "ends": dict(self.ends),
                "crashes_by_signal": dict(self.signals),
                "hangs": self.ends.get("hang", 0),
                "unexpected_exceptions": dict(self.unexpected),
                "failing_cases": len(self.failing_cases),
                "failing_examples": self.failing_cases[:50],
                "decoded_to_an_image": self.decoded,
                "inference_runs": self.inferred,
                "outcomes": dict(sorted(self.outcomes.items())),
                "mutators": dict(self.mutators.most_common()),
                "seeds": len(self.seeds),
                "wall_s": {"median": round(statistics.median(walls), 4) if walls else 0,
                           "p99": round(pct(0.99), 4), "max": round(walls[-1], 4)
                           if walls else 0},
                "worst_wall": self.worst_wall,
                "worst_cpu": self.worst_cpu,
                "worst_peak_rss": self.worst_rss,
                "worst_extra_rss": self.worst_extra,
            }


def run_cases(args: argparse.Namespace, model_dir: Path | None, out: Path,
              tally: Tally) -> dict[str, Any]:
    cases_file = open(out / "cases.jsonl", "a", encoding="utf-8")
    write_lock = threading.Lock()
    t0 = time.monotonic()
    common = dict(timeout_s=args.timeout, mem_mb=args.mem_mb, small=not args.include_large,
                  save=str(out / "reproducers"), workdir=str(out / "work"))
    # light servers (no torch: cheap forks) for most cases, one holding the model for the
    # cases that also run inference
    light = [fuzzing.Server(**common) for _ in range(args.workers)]
    heavy = (fuzzing.Server(model_dir=str(model_dir), infer_every=1, **common)
             if model_dir is not None else None)
    servers = light + ([heavy] if heavy is not None else [])
    for srv in servers:
        srv.wait()
    start_s = time.monotonic() - t0
    info = light[0].info
    plan = list(fuzzing.case_plan(light[0].seed_names, fuzzing.seed_weights(info["seeds"]),
                                  args.cases, args.seed))
    done_before = 0
    seen: set[int] = set()
    if args.resume and (out / "cases.jsonl").exists():
        with open(out / "cases.jsonl", encoding="utf-8") as fh:
            for line in fh:
                try:
                    rec = json.loads(line)
                except ValueError:
                    continue
                seen.add(rec["id"])
                tally.add(rec)
        done_before = len(seen)
    plan_items = [(i, s, r) for i, (s, r) in enumerate(plan) if i not in seen]

    def on_record(rec: dict[str, Any]) -> None:
        compact = dict(rec)
        compact["targets"] = {k: {kk: vv for kk, vv in v.items() if kk != "traceback"}
                              for k, v in rec.get("targets", {}).items()}
        with write_lock:
            cases_file.write(json.dumps(compact) + "\n")
            cases_file.flush()
        tally.add(rec)

    errors: list[str] = []

    def runner() -> None:
        errors.extend(fuzzing.run_plan(plan_items, light, heavy, args.infer_every, on_record))

    threads = [threading.Thread(target=runner, daemon=True)]
    for t in threads:
        t.start()
    last = time.monotonic()
    while any(t.is_alive() for t in threads):
        time.sleep(1.0)
        if time.monotonic() - last >= args.report_every_s:
            last = time.monotonic()
            s = tally.summary()
            rate = (s["cases"] - done_before) / max(1e-9, time.monotonic() - t0 - start_s)
            print(f"[{time.strftime('%H:%M:%S')}] {s['cases']}/{args.cases} cases "
                  f"({rate:.1f}/s): ends {s['ends']}, failing {s['failing_cases']}",
                  flush=True)
            write_summary(out, s, {"phase": "cases", "elapsed_s": time.monotonic() - t0})
    for t in threads:
        t.join()
    for s in servers:
        s.close()
    cases_file.close()
    return {"server_start_s": round(start_s, 1), "cases_wall_s": round(time.monotonic() - t0, 1),
            "server_errors": errors, "seed_files": info["seeds"]}


def run_batches(args: argparse.Namespace, model_dir: Path, out: Path) -> list[dict[str, Any]]:
    """``pneumoview flag`` and ``index_folder`` on folders of mutated files: one row each.

    The report is read back with :func:`pneumoview.core.report.read_report` (what ``--resume``
    and ``merge-reports`` use), so an unreadable report is a finding too.
    """
    from pneumoview.core import report as rep
    from pneumoview.core.errors import PneumoViewError

    seeds = fuzzing.seed_corpus(include_large=args.include_large)
    results = []
    for r in range(args.batch_runs):
        rng = random.Random(args.seed * 1000 + r)
        folder = out / f"batch-{r}"
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(args.batch_files):
            seed = fuzzing.pick_seed(seeds, rng)
            data, _ = fuzzing.mutate(seed.data, random.Random(rng.randrange(2**31)))
            (folder / f"f{i:04d}.dcm").write_bytes(data)
        report = out / f"batch-{r}.csv"
        if report.exists():
            report.unlink()
        cmd = [sys.executable, "-m", "pneumoview", "flag", str(folder), "--output", str(report),
               "--model", str(model_dir), "--device", "cpu", "--timeout", str(args.timeout),
               "--memory-limit", str(args.mem_mb + 2048), "--overwrite", "-q"]
        t0 = time.monotonic()
        proc = subprocess.run(cmd, capture_output=True, text=True, env=_env(), cwd=str(REPO))
        wall = time.monotonic() - t0
        files = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*")
                       if p.is_file())
        rows: list[dict[str, str]] = []
        readable = True
        try:
            rows = rep.read_report(report, allow_partial_tail=False)
        except PneumoViewError as exc:
            readable = str(exc)
        rels = sorted(row["relpath"] for row in rows)
        res = {"run": r, "files": len(files), "rows": len(rows), "exit": proc.returncode,
               "report_readable": readable,
               "one_row_per_file": rels == files, "wall_s": round(wall, 1),
               "statuses": dict(Counter(row["status"] for row in rows)),
               "stderr_tail": proc.stderr[-400:] if proc.returncode else ""}
        # the indexer on the same folder, in its own process
        code = ("import json; from pneumoview.core.indexer import index_folder; "
                f"r = index_folder({str(folder)!r}, cache=False); "
                "print(json.dumps([[i.path for i in r.instances], list(r.non_dicom), "
                "list(r.dicomdirs), [p for p, _ in r.errors]]))")
        ip = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            env=_env(), cwd=str(REPO))
        if ip.returncode == 0:
            inst, non_dicom, dicomdirs, errs = json.loads(ip.stdout.strip().splitlines()[-1])
            found = inst + non_dicom
            listed = {os.path.relpath(p, folder).replace(os.sep, "/")
                      for p in set(found) | set(dicomdirs) | set(errs)}
            # each file: an instance, a non-DICOM file, a followed DICOMDIR or error entries
            # (a DICOMDIR gets one per bad reference); never two of instance/non-DICOM/error
            res["index"] = {"instances": len(inst), "non_dicom": len(non_dicom),
                            "dicomdirs": len(dicomdirs), "files_with_errors": len(set(errs)),
                            "error_entries": len(errs),
                            "every_file_once": listed == set(files)
                            and len(found) == len(set(found)) and not set(inst) & set(errs)}
        else:
            res["index"] = {"exit": ip.returncode, "stderr_tail": ip.stderr[-400:]}
        print(f"[{time.strftime('%H:%M:%S')}] batch {r}: {json.dumps(res)}", flush=True)
        results.append(res)
    return results


def write_summary(out: Path, summary: dict[str, Any], extra: dict[str, Any]) -> None:
    data = {**extra, **summary}
    tmp = out / "summary.json.tmp"
    tmp.write_text(json.dumps(data, indent=1))
    os.replace(tmp, out / "summary.json")
    lines = [
        f"- cases: {summary['cases']} ({summary['seeds']} seed files), "
        f"{summary['decoded_to_an_image']} decoded to an image, "
        f"{summary['inference_runs']} through the inference engine",
        f"- crashes (signals): {sum(summary['crashes_by_signal'].values())} "
        f"{summary['crashes_by_signal'] or ''}",
        f"- hangs (killed at the time bound): {summary['hangs']}",
        f"- unexpected exception types: {sum(summary['unexpected_exceptions'].values())} "
        f"{summary['unexpected_exceptions'] or ''}",
        f"- time per case (all targets): median {summary['wall_s']['median']} s, "
        f"p99 {summary['wall_s']['p99']} s, worst {summary['wall_s']['max']} s "
        f"({summary['worst_wall'].get('seed', '')})",
        f"- worst CPU per case: {summary['worst_cpu'].get('cpu_s', 0)} s "
        f"({summary['worst_cpu'].get('seed', '')})",
        f"- worst memory a case added (high-water mark over its RSS at fork): "
        f"{summary['worst_extra_rss'].get('extra_mb', 0)} MB "
        f"({summary['worst_extra_rss'].get('seed', '')}); worst peak RSS of a case process "
        f"(shared pages of its server included): "
        f"{summary['worst_peak_rss'].get('peak_rss_mb', 0)} MB",
    ]
    for b in extra.get("batches", []):
        lines.append(f"- batch run {b['run']}: {b['files']} files -> {b['rows']} rows, exit "
                     f"{b['exit']}, report readable: {b['report_readable']}, one row per "
                     f"file: {b['one_row_per_file']}, "
                     f"{b['wall_s']} s, {b['statuses']}; indexer: {b.get('index')}")
    (out / "summary.md").write_text("\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--cases", type=int, default=10000)
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--out", default="fuzz-campaign")
    p.add_argument("--timeout", type=float, default=30.0, help="per-case time bound (s)")
    p.add_argument("--mem-mb", type=int, default=3072,
                   help="address space a case may add over its server (RLIMIT_AS)")
    p.add_argument("--infer-every", type=int, default=10,
                   help="run the inference target on one case in N")
    p.add_argument("--include-large", action="store_true",
                   help="also the multi-MB chest files as seeds (slower cases)")
    p.add_argument("--no-model", action="store_true", help="leave the inference target out")
    p.add_argument("--batch-runs", type=int, default=3)
    p.add_argument("--batch-files", type=int, default=200)
    p.add_argument("--report-every-s", type=float, default=60.0)
    p.add_argument("--resume", action="store_true", help="skip cases already in cases.jsonl")
    args = p.parse_args(argv)
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    if not args.resume and (out / "cases.jsonl").exists():
        (out / "cases.jsonl").unlink()
    model_dir = None
    if not args.no_model:
        from tests.support.model_fixture import make_random_model_dir

        model_dir = out / "model"
        if not (model_dir / "metadata.json").exists():
            make_random_model_dir(model_dir)
    tally = Tally()
    t0 = time.monotonic()
    meta: dict[str, Any] = {"args": vars(args), "started": time.strftime("%Y-%m-%d %H:%M:%S"),
                            "cpu_count": os.cpu_count()}
    meta.update(run_cases(args, model_dir, out, tally))
    write_summary(out, tally.summary(), meta)
    if model_dir is not None and args.batch_runs:
        meta["batches"] = run_batches(args, model_dir, out)
    meta["total_wall_s"] = round(time.monotonic() - t0, 1)
    meta["finished"] = time.strftime("%Y-%m-%d %H:%M:%S")
    summary = tally.summary()
    write_summary(out, summary, meta)
    print((out / "summary.md").read_text())
    bad = summary["failing_cases"] or any(
        not b["one_row_per_file"] or b["exit"] != 0 or b["report_readable"] is not True
        for b in meta.get("batches", []))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
