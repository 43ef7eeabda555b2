"""Command lines and paths recorded in a model folder, relative to the checkout.

A model's ``metadata.json`` and ``MODEL_CARD.md`` say how to make it again. Absolute paths of the
machine that trained it (``/home/alice/runs/data224``) mean nothing elsewhere, so every path in
a recorded command line or training argument is written relative to the checkout root, the
folder the README runs ``python -m training`` from: ``../shared/data/kermany/train``,
``runs/bundled/run``. Only path strings change; no value that changes the model does.
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Iterable
from pathlib import Path

#: The checkout root (``training/`` lives in it).
CHECKOUT = Path(__file__).resolve().parents[1]


def portable_path(value: str, root: Path = CHECKOUT, cwd: Path | None = None) -> str:
    """``value`` relative to ``root`` (POSIX separators) when it is a path: absolute, or
    relative to ``cwd`` when that is not ``root`` (a command run from elsewhere). Anything
    else (a number, ``auto``, a flag) comes back unchanged."""
    if not value or value.startswith("-"):
        return value
    if os.path.isabs(value):
        path = Path(value)
    elif cwd is not None and Path(cwd).resolve() != Path(root).resolve() and (
            "/" in value or os.sep in value or (Path(cwd) / value).exists()):
        path = Path(cwd) / value
    else:
        return value
    try:
        rel = os.path.relpath(os.path.normpath(path), os.path.normpath(root))
    except ValueError:  # another drive (Windows): nothing relative to say
        return value
    return Path(rel).as_posix()


def portable_arg(arg: str, root: Path = CHECKOUT, cwd: Path | None = None) -> str:
    """One argument: a path, ``--option=path`` or ``name=path`` (``--extra-folder``)."""
    if "=" in arg and not os.path.isabs(arg):
        key, _, value = arg.partition("=")
        return f"{key}={portable_path(value, root, cwd)}" if value else arg
    return portable_path(arg, root, cwd)


def command_line(argv: Iterable[str], root: Path = CHECKOUT, cwd: Path | None = None) -> str:
    """``python -m training ARGV...`` with every path relative to the checkout."""
    cwd = Path.cwd() if cwd is None else cwd
    args = [portable_arg(a, root, cwd) for a in argv]
    return " ".join(shlex.quote(a) for a in ["python", "-m", "training", *args])


def portable_command(command: str, root: Path = CHECKOUT) -> str:
    """A recorded command line with its absolute paths made relative to the checkout."""
    if not command:
        return command
    try:
        words = shlex.split(command)
    except ValueError:  # unbalanced quotes: leave it as it was recorded
        return command
    return " ".join(shlex.quote(portable_arg(w, root)) for w in words)


def portable_args(args: dict, root: Path = CHECKOUT, cwd: Path | None = None) -> dict:
    """Training arguments with path values made relative to the checkout (relative ones
    taken as relative to ``cwd``, the folder the commands ran in, when given)."""
    return {k: portable_path(v, root, cwd) if isinstance(v, str) else v
            for k, v in args.items()}


def portable_commands(commands: dict | None, root: Path = CHECKOUT) -> dict | None:
    """Recorded command lines (prepare/train/export) with paths relative to the checkout."""
    if not isinstance(commands, dict):
        return commands
    return {k: portable_command(v, root) if isinstance(v, str) else v for k, v in commands.items()}


def portable_provenance(info: dict | None, root: Path = CHECKOUT) -> dict | None:
    """An ``init_from`` record (and the ones nested in it) with checkout-relative paths; an
    earlier model folder exported before paths were recorded this way is fixed here too."""
    if not isinstance(info, dict):
        return info
    out = dict(info)
    if isinstance(out.get("path"), str):
        out["path"] = portable_path(out["path"], root)
    out["command"] = portable_commands(out.get("command"), root)
    training = out.get("training")
    if isinstance(training, dict) and isinstance(training.get("args"), dict):
        out["training"] = {**training, "args": portable_args(training["args"], root)}
    if out.get("init_from") is not None:
        out["init_from"] = portable_provenance(out["init_from"], root)
    return out

