"""The input gate's training: data (real films, offline negatives, synthetic pages,
degradations), feature extraction on a frozen backbone, heads, atypicality and figures.

``python -m training gate --model DIR --out GATE_DIR`` trains the gate on any exported backbone
in minutes; :func:`training.gate.attach.attach_gate` adds it to a model folder;
``python -m training gate-eval --model DIR`` prints the figures (markdown).
"""
