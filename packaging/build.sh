#!/usr/bin/env bash
# Build the PneumoView workstation bundle: dist/PneumoView/ (onedir, two executables:
# PneumoView = viewer, pneumoview-cli = command line), with the model, the codecs, Qt's plugins
# and the licence texts of everything inside (dist/PneumoView/licenses/).
#
#   bash packaging/build.sh
#
# Steps: a clean build environment in build/venv (from the Python named by $PYTHON, default
# python3.11), PneumoView installed into it from this checkout (not editable) with PyInstaller,
# then packaging/pneumoview.spec. Needs the bundled model in resources/model/.
#
# Environment:
#   PYTHON=python3.x               the interpreter to build with (default python3.11)
#   PNEUMOVIEW_TORCH_INDEX_URL=URL install torch/torchvision from this index first, e.g. PyTorch's
#                                  CPU-only wheels (a much smaller build; see README)
#   PNEUMOVIEW_REUSE_VENV=1        keep an existing build/venv (faster rebuilds while iterating)
#   PNEUMOVIEW_ALLOW_NO_MODEL=1    build without resources/model (packaging tests only)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"

PYINSTALLER_VERSION="6.22.3"
HOOKS_CONTRIB_VERSION="2026.9"
VENV="$ROOT/build/venv"
WORK="$ROOT/build/pyinstaller"
DIST="$ROOT/dist"

log() { printf '[build %s] %s\n' "$(date -u +%H:%M:%S)" "$*"; }

if [ ! -f resources/model/metadata.json ] && [ "${PNEUMOVIEW_ALLOW_NO_MODEL:-0}" != 1 ]; then
  echo "build.sh: no bundled model in resources/model/ (metadata.json missing)." >&2
  echo "Train and export the model first, or set PNEUMOVIEW_ALLOW_NO_MODEL=1." >&2
  exit 1
fi

PY="${PYTHON:-python3.11}"
command -v "$PY" >/dev/null 2>&1 || PY=python3
start=$(date +%s)

if [ "${PNEUMOVIEW_REUSE_VENV:-0}" = 1 ] && [ -x "$VENV/bin/python" ]; then
  log "reusing $VENV"
else
  log "creating a clean build environment in $VENV ($("$PY" --version))"
  rm -rf "$VENV"
  "$PY" -m venv "$VENV"
  "$VENV/bin/python" -m pip install -q --upgrade pip
  if [ -n "${PNEUMOVIEW_TORCH_INDEX_URL:-}" ]; then
    log "torch and torchvision from $PNEUMOVIEW_TORCH_INDEX_URL"
    "$VENV/bin/python" -m pip install -q torch torchvision --index-url "$PNEUMOVIEW_TORCH_INDEX_URL"
  fi
fi
log "installing PneumoView (from $ROOT) and PyInstaller $PYINSTALLER_VERSION"
"$VENV/bin/python" -m pip install -q --upgrade --force-reinstall --no-deps "$ROOT"
"$VENV/bin/python" -m pip install -q "$ROOT" "pyinstaller==$PYINSTALLER_VERSION" \
  "pyinstaller-hooks-contrib==$HOOKS_CONTRIB_VERSION"
"$VENV/bin/python" -m pip check
"$VENV/bin/python" - <<'EOF'
import torch, PySide6, pydicom, pneumoview
print(f"build environment: pneumoview {pneumoview.__version__}, torch {torch.__version__} "
      f"(CUDA {torch.version.cuda or 'none'}), PySide6 {PySide6.__version__}, "
      f"pydicom {pydicom.__version__}")
EOF

log "running PyInstaller"
rm -rf "$DIST/PneumoView"
"$VENV/bin/python" -m PyInstaller --noconfirm --clean --log-level WARN \
  --distpath "$DIST" --workpath "$WORK" packaging/pneumoview.spec

test -x "$DIST/PneumoView/PneumoView" -o -f "$DIST/PneumoView/PneumoView.exe"
log "built $DIST/PneumoView in $(( $(date +%s) - start )) s: $(du -sh "$DIST/PneumoView" | cut -f1)"
