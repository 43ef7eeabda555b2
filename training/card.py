"""MODEL_CARD.md from a model's metadata (every number comes from the metadata, none typed)."""

from __future__ import annotations

from training.oppoints import UNKNOWN_AGE_RULE

SOURCE_NOTES = {
    "kermany": ("Kermany et al. 2018 pediatric chest X-rays (Guangzhou Women and Children's "
                "Medical Center), CC BY 4.0, data.mendeley.com/datasets/rscbjbr9sj/2",
                "paediatric"),
    "nih": ("NIH ChestX-ray14 (Wang et al., CVPR 2017), NIH Clinical Center, no usage "
            "restrictions; 'Pneumonia' vs 'No Finding' images", "adult"),
    "rsna": ("RSNA Pneumonia Detection Challenge (stage 2 train), RSNA/Kaggle terms", "adult"),
}

INTENDED_USE = (
    "Research and triage aid: it ranks frontal chest radiographs by how likely they show "
    "pneumonia so that a reader can look at flagged images first. **Not for diagnostic use.** "
    "It does not replace a radiologist, was not validated prospectively, and is not a "
    "medical device.")


def fmt_ci(m: dict, key: str) -> str:
    ci = (m.get("ci95") or {}).get(key)
    v = m.get(key)
    if v is None:
        return "n/a"
    return f"{v:.3f} ({ci[0]:.3f}-{ci[1]:.3f})" if ci else f"{v:.3f}"


def commands(meta: dict) -> list[str]:
    """All command lines, earliest stage first."""
    out: list[str] = []
    init = meta.get("init_from") or {}
    if init.get("command"):
        out += commands({"command": init["command"], "init_from": init.get("init_from")})
    c = meta["command"]
    out += [c.get("prepare", ""), c.get("cv", ""), c.get("train", ""), c.get("export", ""),
            c.get("oppoints", ""), c.get("quantize", "")]
    seen: list[str] = []
    for x in out:  # the same prepare line appears once per stage
        if x and x not in seen:
            seen.append(x)
    return seen


def _model(meta: dict) -> list[str]:
    lines = [
        "## Model", "",
        f"- Architecture: `{meta['architecture']}` (torchvision ResNet18, one-channel first "
        "convolution, one output logit), trained from scratch (no pretrained weights).",
        f"- Input: model-input contract `{meta['input_contract']}` at {meta['input_size']} x "
        f"{meta['input_size']} px, normalised with mean {meta['mean']:.4f} and std "
        f"{meta['std']:.4f}.",
        f"- Output: probability = sigmoid(logit / {meta['temperature']:.3f}) (temperature fitted "
        "on the validation images).",
    ]
    points = meta.get("operating_points") or {}
    if points:
        lines.append("- Operating points (thresholds on that probability), one per population:")
        for pop, op in points.items():
            lines.append(f"  - **{pop}** ({op['criterion']}): {op['threshold']:.4f}, chosen for "
                         f"sensitivity {op['target_sensitivity']:.2f} on "
                         f"{op.get('chosen_on', 'the validation images')}.")
        lines.append(f"  - Unknown age: {UNKNOWN_AGE_RULE}, {meta['threshold']:.4f} (also "
                     "metadata `threshold`, for readers that know one threshold).")
    else:
        lines.append(f"- Operating threshold: {meta['threshold']:.4f} on that probability, "
                     f"chosen on the validation split for sensitivity "
                     f"{meta['target_sensitivity']:.2f}.")
    prec = (meta.get("training") or {}).get("precision")
    if prec:
        lines.append(f"- Trained in {prec['dtype']} ({prec['reason']}).")
    lines += [f"- Weights sha256: `{meta.get('weights_sha256', '(added on write)')}`.", ""]
    return lines


def _data(meta: dict) -> list[str]:
    lines = ["## Data", ""]
    for name, d in meta["data"]["sources"].items():
        note, pop = SOURCE_NOTES.get(name, (name, "unknown population"))
        counts = ", ".join(f"{s} {c['n']} ({c['positive']} pneumonia, {c['patients']} patients)"
                           for s, c in d["splits"].items())
        lines.append(f"- **{name}** ({pop}): {note}. {counts}. Content sha256 "
                     f"`{d['content_sha256'][:16]}...`.")
    cv = meta["metrics"].get("cross_validation")
    lines += [
        "",
        "Splits are by patient (never by image), stratified by label and source, seeded; "
        "byte-identical files stay in one split" + (" (the same split as v1.0)." if cv else "."),
    ]
    if cv:
        lines += [
            "",
            f"The adult images of the train and val splits ({cv['n']} NIH images, "
            f"{cv['patients']} patients) are all trained on: {cv['folds']}-fold "
            "cross-validation by patient chose the recipe and gives the adult validation "
            "figures (out-of-fold predictions), and the final model is the same fine-tune on "
            "all folds. The 73-image NIH test split stays held out: it is the one before/after "
            "comparison with v1.0 on images neither model trained on.",
        ]
    return lines + [""]


def _cv(meta: dict) -> list[str]:
    cv = meta["metrics"].get("cross_validation")
    if not cv:
        return []
    ci = cv.get("oof_auroc_ci95") or [float("nan")] * 2
    lines = ["## Adult validation (cross-validation)", "",
             f"Fine-tune `{cv['config']}` at {cv['size']} px, {cv['folds']} folds by patient "
             f"over {cv['n']} NIH images ({cv['positives']} pneumonia).", "",
             "| fold | n | adult AUROC | Kermany guard AUROC |", "|---|---|---|---|"]
    for f, (a, n, g) in enumerate(zip(cv["fold_auroc"], cv["fold_n"], cv["guard_auroc"],
                                      strict=True)):
        lines.append(f"| {f} | {n} | {a:.3f} | {g:.4f} |")
    lines += ["",
              f"Mean fold AUROC {cv['mean_fold_auroc']:.3f} (sd {cv['sd_fold_auroc']:.3f}); "
              f"pooled out-of-fold AUROC {cv['oof_auroc']:.3f} ({ci[0]:.3f}-{ci[1]:.3f}, "
              "bootstrap over patients).", ""]
    if "mean_rotation_acc" in cv:
        lines += [f"Trained with the orientation auxiliary task: a training-only head named the "
                  f"quarter turn of the out-of-fold films with accuracy "
                  f"{cv['mean_rotation_acc']:.3f} (all four turns; turned films taken for "
                  f"upright {cv['mean_rotated_taken_upright']:.3f}). The exported network has no "
                  "such head: the input gate's orientation head reads the same backbone's "
                  "features.", ""]
    return lines


def _metrics_table(title: str, note: str, part: dict) -> list[str]:
    lines = [title, "", note, "",
             "| part | n | prevalence | operating point | AUROC | sensitivity | specificity | "
             "ECE |", "|---|---|---|---|---|---|---|---|"]
    for name, m in part.items():
        lines.append(f"| {name} | {m['n']} | {m['prevalence']:.3f} | "
                     f"{m.get('operating_point', 'threshold')} | {fmt_ci(m, 'auroc')} | "
                     f"{fmt_ci(m, 'sensitivity')} | {fmt_ci(m, 'specificity')} | "
                     f"{fmt_ci(m, 'ece')} |")
    return lines + [""]


def _comparison(meta: dict) -> list[str]:
    comp = meta["metrics"].get("comparison")
    if not comp:
        return []
    lines = ["## Before and after (same held-out test images)", "",
             f"`{comp['model']}` against this model, each at its own operating threshold(s); "
             "AUROC difference with a paired bootstrap over patients.", "",
             "| part | n | AUROC before | AUROC after | difference | sensitivity before | "
             "sensitivity after | specificity before | specificity after |",
             "|---|---|---|---|---|---|---|---|---|"]
    for name, before in comp["test"].items():
        after = meta["metrics"]["test"].get(name)
        d = comp["auroc_difference"].get(name)
        if after is None or d is None:
            continue
        lines.append(
            f"| {name} | {after['n']} | {fmt_ci(before, 'auroc')} | {fmt_ci(after, 'auroc')} | "
            f"{d['value']:+.3f} ({d['ci_low']:+.3f} to {d['ci_high']:+.3f}) | "
            f"{fmt_ci(before, 'sensitivity')} | {fmt_ci(after, 'sensitivity')} | "
            f"{fmt_ci(before, 'specificity')} | {fmt_ci(after, 'specificity')} |")
    return lines + [""]


def search_table(search: dict) -> list[str]:
    """'What each change did on validation' (from ``python -m training search``)."""
    rows = search.get("rows") or []
    if not rows:
        return []
    lines = ["| configuration | change | mean fold adult AUROC (sd) | pooled out-of-fold "
             "AUROC (95 % CI) | Kermany guard AUROC | rotation accuracy (turned taken for "
             "upright) | fine-tune time per fold |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        ci = r.get("oof_auroc_ci95") or [float("nan")] * 2
        t = r.get("mean_fold_wall_s")
        minutes = f"{t / 60:.0f} min" if t else "n/a"
        rot = r.get("mean_rotation_acc")
        rot_text = "no task" if rot is None else \
            f"{rot:.3f} ({r['mean_rotated_taken_upright']:.3f})"
        lines.append(f"| `{r['config']}` | {r.get('change', '')} | {r['mean_fold_auroc']:.3f} "
                     f"({r['sd_fold_auroc']:.3f}) | {r['oof_auroc']:.3f} ({ci[0]:.3f}-"
                     f"{ci[1]:.3f}) | {r['mean_guard_auroc']:.4f} | {rot_text} | {minutes} |")
    return lines


def _search(meta: dict) -> list[str]:
    search = (meta.get("training") or {}).get("search")
    table = search_table(search or {})
    if not table:
        return []
    return ["## What each change did (adult cross-validation, validation only)", "",
            *table, "", search.get("note", ""), ""]


def _timings(meta: dict) -> list[str]:
    st = (meta.get("training") or {}).get("stage_times")
    if not st:
        return []
    total_w = sum(v["wall_s"] for v in st.values())
    parts = ", ".join(f"{k} {v['wall_s'] / 60:.0f} min" for k, v in st.items())
    return [f"Stage wall times of the run that made this model, up to its export (2-core CPU, "
            f"shared): {parts}; total {total_w / 3600:.2f} h wall, {_cpu_total(st)}.", ""]


def _cpu_total(st: dict) -> str:
    """The CPU total, saying which stages carry none (timed from another run's log)."""
    untimed = [k for k, v in st.items() if v["cpu_s"] is None]
    if len(untimed) == len(st):
        return "CPU not recorded"
    total_c = sum(v["cpu_s"] for v in st.values() if v["cpu_s"] is not None)
    if not untimed:
        return f"{total_c / 3600:.2f} h CPU"
    return f"{total_c / 3600:.2f} h CPU (not recorded for {', '.join(untimed)})"


CV_LIMIT = (
    "- Small adult data: 417 trained-on and 73 held-out NIH images; the adult intervals are "
    "wide. The adult operating point comes from out-of-fold predictions of the fold models, "
    "applied to the final model trained on all folds (the usual cross-validation practice; "
    "its logits can be slightly more confident).")
SPLIT_LIMIT = (
    "- Small adult data: {train} trained-on, {val} validation and {test} held-out NIH images; "
    "the adult intervals are wide, and the adult operating point rests on {adults} adult "
    "validation films.")
LABEL_LIMIT = (
    "- NIH labels were mined from radiology reports (noisy); NIH 'Pneumonia' images often "
    "show other findings too. Kermany images were resized to 224 x 224 without keeping the "
    "aspect ratio by the redistributor")
LIMITS = [
    "- Trained on frontal (PA/AP) radiographs only; lateral views, other body parts, "
    "children under the Kermany age range, and images from other scanners or hospitals are "
    "out of distribution. The input gate (section above, when attached) refuses rotated, "
    "inverted and non-chest images by content; laterals only by tags and a weak proxy.",
    "- Trained from scratch on about 4,000 images on a CPU; a model initialised from "
    "ImageNet weights or trained on RSNA would likely be better (see README, Training).",
    "- Calibration was fitted on the validation images of both populations; probabilities "
    "are not calibrated for other prevalences (site profiles re-calibrate).",
]


def _limits(meta: dict) -> list[str]:
    """The known limits, worded for this model's data (cross-validated or one split)."""
    nih = meta["data"]["sources"].get("nih", {}).get("splits", {})
    if meta["metrics"].get("cross_validation"):
        first = CV_LIMIT
    elif nih:
        adults = (meta.get("operating_points") or {}).get("adult", {}).get("chosen_on", "")
        n = adults.split("n=")[1].split(",")[0] if "n=" in adults else "the"
        first = SPLIT_LIMIT.format(train=nih["train"]["n"], val=nih["val"]["n"],
                                   test=nih["test"]["n"], adults=n)
    else:
        first = ""
    size = int(meta["input_size"])
    label = LABEL_LIMIT + (f" (at {size} px they are upsampled)." if size > 224 else ".")
    return [x for x in (first, label) if x] + LIMITS


def _points_figures(meta: dict) -> list[str]:
    """Each population's validation and test figures at each operating point."""
    figs = meta["metrics"].get("operating_points")
    if not figs:
        return []
    cmd = (meta.get("command") or {}).get("oppoints", "")
    lines = ["## Operating points: figures per population", "",
             "Chosen on the validation split"
             + (f" by `{cmd}`" if cmd else "") + "; the test split is only reported. "
             "Sensitivity and specificity with bootstrap 95 % intervals (resampling patients) "
             "at each point, and at the single threshold the model had before"
             + (f" ({single['threshold']:.4f})" if (single := meta["metrics"].get(
                 "single_threshold")) else "") + ".",
             "", "| split | population | at | n (pneumonia) | patients | threshold | "
             "sensitivity | specificity |", "|---|---|---|---|---|---|---|---|"]
    for split, pops in figs.items():
        for pop, at in pops.items():
            for name, f in at.items():
                lines.append(f"| {split} | {pop} | {name} | {f['n']} ({f['tp'] + f['fn']}) | "
                             f"{f['patients']} | {f['threshold']:.4f} | "
                             f"{fmt_ci(f, 'sensitivity')} | {fmt_ci(f, 'specificity')} |")
    return lines + [""]


def _int8(meta: dict) -> list[str]:
    """The int8 graph (``python -m training quantize``) and the guard it passed."""
    q = meta.get("int8_quantisation")
    if not meta.get("int8") or not q:
        return []
    g, c = q["guard"], q["calibration"]
    srcs = ", ".join(f"{k} {v}" for k, v in sorted(c["sources"].items()))
    decisions = "; ".join(f"{name} {d['threshold']:.4f}: {d['differ']} differ"
                          for name, d in g["decisions"].items())
    return ["## Int8 graph (`--precision int8`)", "",
            f"`int8.xml` + `int8.bin` (OpenVINO IR, sha256 {meta['int8']['xml_sha256'][:12]} and "
            f"{meta['int8']['bin_sha256'][:12]} in `int8`), made by `{q['command']}`: "
            f"{q['method']}, calibrated on {c['n']} films of the training split ({srcs}; seed "
            f"{c['seed']}); NNCF {q['versions']['nncf']}, OpenVINO {q['versions']['openvino']}.",
            "",
            f"Accuracy guard on the {g['n']} validation images against torch float32: AUROC "
            f"{g['auroc_int8']:.5f} vs {g['auroc_torch_f32']:.5f} (delta {g['auroc_delta']:.1e}, "
            f"limit {g['auroc_tolerance']}); probabilities within "
            f"{g['max_abs_probability_difference']:.3f}; flag decisions: {decisions}, each "
            f"within {g['threshold_margin']} of its threshold. The command refuses to write a "
            "graph that fails the guard.", ""]


def model_card(meta: dict) -> str:
    """MODEL_CARD.md text from the metadata (no numbers typed by hand)."""
    m = meta["metrics"]
    lines = [f"# Model card: {meta['name']} {meta['version']}", "", "## Intended use", "",
             INTENDED_USE, "", *_model(meta), *_data(meta), *_cv(meta)]
    lines += _points_figures(meta)
    if m.get("test"):
        lines += _metrics_table(
            "## Test metrics (held-out test split, never used for any choice)",
            "Point estimate with bootstrap 95 % interval (resampling patients); sensitivity and "
            "specificity at each part's population operating point; ECE = expected "
            "calibration error (10 bins).", m["test"])
    if m.get("test_unknown_age"):
        lines += _metrics_table("### The same at the unknown-age threshold", "When the "
                                "film's age is unknown the lower threshold applies.",
                                m["test_unknown_age"])
    lines += _comparison(meta)
    for name, e in m.get("extra", {}).items():
        lines.append(f"Extra check `{name}` (n={e['n']}, {e.get('operating_point', '')} "
                     f"operating point): AUROC {e['auroc']:.3f}, sensitivity "
                     f"{e['sensitivity']:.3f}, specificity {e['specificity']:.3f}.")
        lines.append("")
    lines += _search(meta)
    lines += _int8(meta)
    lines += ["## Known limits", "", *_limits(meta), "", "## Reproduce", "",
              "One command from a checkout: `python -m training reproduce` (README, Training). "
              "It runs:", "", "```", *commands(meta), "```", "", *_timings(meta),
              f"Git commit {meta['git_commit']}, {meta['created']}.", ""]
    card = "\n".join(lines)
    if meta.get("gate"):
        from training.gate.attach import card_with_gate

        card = card_with_gate(card, meta)
    return card
