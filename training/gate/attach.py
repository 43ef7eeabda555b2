"""A gate folder, and adding it to a model folder.

A gate folder (``python -m training gate --out GATE_DIR``) holds ``gate.safetensors`` (the
``gate.*`` tensors) and ``gate.json`` (``{"gate": <the model's gate block>, "gate_training":
<provenance and validation figures>}``). :func:`attach_gate` writes them into a model folder:
the tensors into ``model.safetensors`` (replacing any earlier gate), the blocks into
``metadata.json``, a new ``weights_sha256``, and an "Input gate" section in the model card. The
network's tensors are copied bit for bit, so the classifier's outputs do not change.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import numpy as np

from pneumoview.core.errors import PneumoViewError
from pneumoview.core.inputgate import GATE_FORMAT, split_gate_tensors

GATE_TENSORS = "gate.safetensors"
GATE_JSON = "gate.json"
CARD_START = "<!-- input-gate: start -->"
CARD_END = "<!-- input-gate: end -->"


def write_gate_dir(out: Path | str, tensors: dict[str, np.ndarray], gate: dict,
                   training: dict) -> Path:
    from safetensors.numpy import save_file

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    save_file({k: np.ascontiguousarray(v) for k, v in tensors.items()},
              str(out / GATE_TENSORS), metadata={"format": GATE_FORMAT})
    (out / GATE_JSON).write_text(json.dumps({"gate": gate, "gate_training": training},
                                            indent=2) + "\n", encoding="utf-8")
    return out


def read_gate_dir(gate_dir: Path | str) -> tuple[dict[str, np.ndarray], dict, dict]:
    from safetensors.numpy import load_file

    d = Path(gate_dir)
    if not (d / GATE_JSON).is_file() or not (d / GATE_TENSORS).is_file():
        raise PneumoViewError(f"not a gate folder (needs {GATE_JSON} and {GATE_TENSORS}); "
                              "make one with `python -m training gate`", d)
    blob = json.loads((d / GATE_JSON).read_text(encoding="utf-8"))
    return load_file(str(d / GATE_TENSORS)), blob["gate"], blob.get("gate_training", {})


def card_section(gate: dict, training: dict) -> str:
    """The model card's "Input gate" section (from the metadata; no numbers typed by hand)."""
    lines = [CARD_START, "## Input gate", "",
             "Before every score the app checks that the image looks like an upright frontal "
             "chest film (format `" + gate["format"] + "`): size and aspect rules, a "
             "no-content rule (blank, uniform, gradient, noise), heads on the backbone's "
             "last-block activations, and an atypicality distance. The heads read "
             + gate.get("features", "pooled A") + ".", ""]
    for name, h in gate["heads"].items():
        lines.append(f"- `{name}` head: classes {', '.join(h['classes'])}; refuses when "
                     f"P({h['classes'][0]}) < {h['refuse_below']:.4f}.")
    a = gate.get("atypicality")
    if a:
        lines.append(f"- Atypicality: {a['method']}, reported as a percentile among "
                     f"{a['n_reference']} validation films; refuses above distance "
                     f"{a['refuse_above']:.3f} (percentile {a['refuse_above_percentile']:.1f}; "
                     f"{a['bound_rule']}).")
    if training.get("figures_markdown"):
        lines += ["", training["figures_markdown"]]
    if training.get("command"):
        lines += ["", f"Trained by `{training['command']}`."]
    if training.get("thresholds_note"):
        lines.append(f"Thresholds: {training['thresholds_note']}.")
    lines += [CARD_END, ""]
    return "\n".join(lines)


_WEIGHTS_LINE = re.compile(r"^- Weights sha256: `[^`]*`\.$", re.MULTILINE)


def card_with_gate(card: str, meta: dict) -> str:
    """``card`` with the gate section of ``meta`` and its weights sha256 line brought up to date
    (attaching a gate changes the weights file, so the card must name the new digest)."""
    card = _card_with_section(card, card_section(meta["gate"], meta.get("gate_training", {})))
    return _WEIGHTS_LINE.sub(f"- Weights sha256: `{meta['weights_sha256']}`.", card)


def _card_with_section(card: str, section: str) -> str:
    if CARD_START in card and CARD_END in card:
        head, rest = card.split(CARD_START, 1)
        tail = rest.split(CARD_END, 1)[1].lstrip("\n")
        card = head.rstrip("\n") + "\n\n" + tail
    marker = "\n## Known limits"
    if marker in card:
        i = card.index(marker)
        return card[:i].rstrip("\n") + "\n\n" + section + card[i:]
    return card.rstrip("\n") + "\n\n" + section


def attach_gate(model_dir: Path | str, gate_dir: Path | str,
                out_dir: Path | str | None = None) -> Path:
    """Write ``model_dir`` plus the gate of ``gate_dir`` to ``out_dir`` (default: in place)."""
    from safetensors.numpy import load_file, save_file

    from pneumoview.core.model import (
        ARCHITECTURE,
        CARD_FILE,
        METADATA_FILE,
        WEIGHTS_FILE,
        read_model_info,
        sha256_file,
        verify_weights,
    )

    src = Path(model_dir)
    info = read_model_info(src)
    verify_weights(info)
    from training.gate.features import network_digest

    gate_tensors, gate, training = read_gate_dir(gate_dir)
    net, _old = split_gate_tensors(load_file(str(info.weights_path)))
    if training.get("backbone_id") != network_digest(net, info):
        raise PneumoViewError("the gate was trained on another backbone (or input "
                              "normalisation); retrain it with `python -m training gate`",
                              gate_dir)
    out = Path(out_dir) if out_dir is not None else src
    staging = out.parent / (out.name + ".gate-tmp")
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir(parents=True)
    save_file({**net, **gate_tensors}, str(staging / WEIGHTS_FILE),
              metadata={"architecture": ARCHITECTURE})
    (staging / WEIGHTS_FILE).chmod(0o644)
    meta = dict(info.raw)
    meta["gate"] = gate
    meta["gate_training"] = training
    meta["weights_sha256"] = sha256_file(staging / WEIGHTS_FILE)
    (staging / METADATA_FILE).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    card_path = src / CARD_FILE
    card = card_path.read_text(encoding="utf-8") if card_path.is_file() else ""
    (staging / CARD_FILE).write_text(card_with_gate(card, meta), encoding="utf-8")
    out.mkdir(parents=True, exist_ok=True)
    for f in staging.iterdir():
        os.replace(f, out / f.name)
    staging.rmdir()
    return out


def record_figures(model_dir: Path | str, markdown: str) -> None:
    """Put the gate's figures (``gate-eval``) into the model's ``gate_training`` record and its
    card's "Input gate" section; weights and behavioural metadata are not touched."""
    from pneumoview.core.model import CARD_FILE, METADATA_FILE

    d = Path(model_dir)
    meta = json.loads((d / METADATA_FILE).read_text(encoding="utf-8"))
    if "gate" not in meta:
        raise PneumoViewError("the model has no input gate", d)
    meta.setdefault("gate_training", {})["figures_markdown"] = markdown
    (d / METADATA_FILE).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    card_path = d / CARD_FILE
    card = card_path.read_text(encoding="utf-8") if card_path.is_file() else ""
    card_path.write_text(card_with_gate(card, meta), encoding="utf-8")
