"""Copy the licence texts of everything a PyInstaller build bundles into ``licenses/``.

Called by ``pneumoview.spec`` after the build, in the build environment's Python. A distribution
counts as bundled when any file it installed is a source of the build's TOC (its Python modules,
shared libraries or data files), so the list follows what PyInstaller really took: the NVIDIA
libraries of a CUDA torch appear when they are bundled and not otherwise. For each, the licence
files from its ``.dist-info`` (``LICENSE``, ``COPYING``, ``NOTICE``, PEP 639 ``licenses/``...) are
copied to ``licenses/<name>-<version>/``; a distribution that ships none gets a file with the
licence its metadata declares. Added by hand: Python's own licence, and the LGPL-3.0/GPL-3.0
texts for Qt and PySide6 (their wheels carry only the licence name).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
import sysconfig
from collections.abc import Iterable
from importlib import metadata
from pathlib import Path

_LICENCE_NAME = re.compile(r"^(licen[cs]e|copying|notice|authors|patents|third[-_]?party|eula)",
                           re.IGNORECASE)
_LICENCE_DIRS = {"licenses", "licences", "license_files", "third_party_licenses"}
#: Qt is LGPL-3.0 (or GPL); the LGPL-3.0 text refers to the GPL-3.0 text, so ship both.
_QT_DISTS = {"pyside6", "pyside6-essentials", "pyside6-addons", "shiboken6"}
_QT_NOTE = """Qt and Qt for Python (PySide6, shiboken6)
==========================================
This build contains the Qt 6 libraries and the PySide6/shiboken6 bindings, used under the GNU
Lesser General Public License version 3 (LGPL-3.0, in LGPL-3.0.txt; it builds on the GPL-3.0,
in GPL-3.0.txt). They are shipped as separate, unmodified shared libraries (the PySide6/ and
shiboken6/ folders of the build), so they can be replaced by other builds of the same version. Their
complete source code is published by The Qt Company at https://code.qt.io and
https://download.qt.io (version {version}).
"""


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _real(path: str | os.PathLike[str]) -> str:
    return os.path.normcase(os.path.realpath(path))


def bundled_distributions(sources: Iterable[str]) -> list[metadata.Distribution]:
    """The installed distributions that own at least one of these source files."""
    wanted = {_real(s) for s in sources if s}
    basenames = {os.path.basename(w) for w in wanted}  # cheap filter before realpath
    found: dict[str, metadata.Distribution] = {}
    for dist in metadata.distributions():
        name = dist.metadata["Name"] or ""
        if not name or _norm(name) in found:
            continue
        for f in dist.files or ():
            if os.path.normcase(f.name) not in basenames:
                continue
            if _real(dist.locate_file(f)) in wanted:
                found[_norm(name)] = dist
                break
    return sorted(found.values(), key=lambda d: _norm(d.metadata["Name"]))


def _licence_files(dist: metadata.Distribution) -> list[tuple[Path, str]]:
    """(source file, path inside the dist-info) for each licence-like file of ``dist``."""
    out = []
    for f in dist.files or ():
        parts = Path(str(f)).parts
        if not parts or not parts[0].endswith(".dist-info") or len(parts) < 2:
            continue
        inner = Path(*parts[1:])
        if _LICENCE_NAME.match(inner.name) or (inner.parts[0].lower() in _LICENCE_DIRS):
            src = Path(str(dist.locate_file(f)))
            if src.is_file():
                out.append((src, str(inner)))
    return out


def _declared(dist: metadata.Distribution) -> str:
    meta = dist.metadata
    expr = (meta.get("License-Expression") or "").strip()
    text = (meta.get("License") or "").strip()
    classifiers = [c.split(" :: ")[-1] for c in meta.get_all("Classifier") or []
                   if c.startswith("License ::")]
    if expr:
        return expr
    if text and "\n" not in text and len(text) <= 80:  # a name, not the whole licence text
        return text
    if classifiers:
        return "; ".join(classifiers)
    first = text.splitlines()[0].strip() if text else ""
    return first[:77] + "..." if len(first) > 80 else first


def collect(sources: Iterable[str], out_dir: Path, extra_dir: Path,
            always: Iterable[str] = ("pyinstaller",)) -> list[dict]:
    """Write ``out_dir`` (replacing it) and return one summary row per component."""
    if out_dir.exists():
        shutil.rmtree(out_dir)
    out_dir.mkdir(parents=True)
    dists = bundled_distributions(sources)
    names = {_norm(d.metadata["Name"]) for d in dists}
    for extra in always:  # e.g. PyInstaller: its bootloader is inside every executable
        try:
            d = metadata.distribution(extra)
        except metadata.PackageNotFoundError:
            continue
        if _norm(d.metadata["Name"]) not in names:
            dists.append(d)
            names.add(_norm(d.metadata["Name"]))
    rows = []
    for dist in dists:
        name, version = dist.metadata["Name"], dist.version
        folder = out_dir / f"{_norm(name)}-{version}"
        folder.mkdir()
        files = _licence_files(dist)
        for src, inner in files:
            dst = folder / inner
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, dst)
        declared = _declared(dist)
        if _norm(name) in _QT_DISTS:
            for text in ("LGPL-3.0.txt", "GPL-3.0.txt"):
                shutil.copyfile(extra_dir / text, folder / text)
            (folder / "README.txt").write_text(_QT_NOTE.format(version=version),
                                               encoding="utf-8")
        elif not files:
            (folder / "LICENSE-FROM-METADATA.txt").write_text(
                f"{name} {version}\nThe distribution ships no licence file; its metadata "
                f"declares: {declared or 'nothing'}\n", encoding="utf-8")
        rows.append({"name": name, "version": version, "license": declared,
                     "files": sorted(p.relative_to(out_dir).as_posix()
                                     for p in folder.rglob("*") if p.is_file())})
    # Python itself (the interpreter and standard library are inside every build)
    py_licence = Path(sysconfig.get_paths()["stdlib"]) / "LICENSE.txt"
    folder = out_dir / f"python-{sys.version.split()[0]}"
    folder.mkdir()
    if py_licence.is_file():
        shutil.copyfile(py_licence, folder / "LICENSE.txt")
    else:
        (folder / "LICENSE.txt").write_text("Python Software Foundation License Version 2 "
                                            "(PSF-2.0); see https://docs.python.org/3/license.html\n",
                                            encoding="utf-8")
    rows.append({"name": "Python", "version": sys.version.split()[0], "license": "PSF-2.0",
                 "files": [f"{folder.name}/LICENSE.txt"]})
    lines = ["Licences of the components bundled in this PneumoView build", "=" * 60, ""]
    lines += [f"{r['name']:<32} {r['version']:<16} {r['license']}" for r in rows]
    lines += ["", "Each component's licence files are in the folder named after it."]
    (out_dir / "README.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (out_dir / "components.json").write_text(json.dumps(rows, indent=1) + "\n",
                                             encoding="utf-8")
    return rows
