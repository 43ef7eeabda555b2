"""What a run uses (model, device, size guard, batch size, workers, time limit, threshold) and
the one rule that decides it: the command line, then the user's settings, then the default.

The command-line front ends, the viewer and its AI and batch controllers all call
:func:`resolve`; none of them re-implements the precedence. A field's ``metadata`` names the
:class:`~pneumoview.core.settings.Settings` attribute it falls back to (and which settings
value means "not set"), so a later option (an inference ``engine``, a ``precision``, a site
``profile``) is one field here and, when the viewer remembers it, one field in ``Settings``.

Headless commands (``flag``) resolve without settings on purpose: a report must depend on its
command line only, not on what was last chosen in the viewer.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pneumoview.core import defaults

_UNSET = object()

#: Fields whose command-line option has a shorter name.
_CLI_NAMES = {"model_dir": "model", "timeout_s": "timeout"}


def _from(setting: str, unset: Any = _UNSET) -> dict[str, Any]:
    """Field metadata: falls back to ``Settings.<setting>`` unless it holds ``unset``."""
    return {"setting": setting, "unset": unset}


@dataclass(frozen=True)
class RunOptions:
    """A resolved choice for one run; ``None`` means "decided later" where documented."""

    #: model folder; None: the bundled model
    model_dir: str | None = field(default=None, metadata=_from("ai_model_dir", unset=""))
    device: str = field(default=defaults.DEVICE, metadata=_from("ai_device", unset=""))
    engine: str = field(default=defaults.ENGINE, metadata=_from("ai_engine", unset=""))
    precision: str = field(default=defaults.PRECISION, metadata=_from("ai_precision", unset=""))
    #: size guard in MiB (an image needing more is refused before decoding)
    max_image_mib: int = field(default=defaults.MAX_IMAGE_MIB, metadata=_from("max_image_mib"))
    batch_size: int = defaults.BATCH_SIZE
    #: decode worker processes; None: :func:`defaults.decode_workers`
    workers: int | None = None
    timeout_s: float = defaults.DECODE_TIMEOUT_S
    #: flagging threshold; None: the user's saved threshold for the model, else the model's
    #: own (known once the model is loaded: :func:`resolve_threshold`)
    threshold: float | None = None

    @property
    def max_image_bytes(self) -> int:
        return max(1, int(self.max_image_mib)) * defaults.MIB


def resolve(cli: Mapping[str, Any] | Any | None = None, settings: Any = None) -> RunOptions:
    """The run's options: a value given on the command line wins, then the settings' value
    (when set), then the default.

    ``cli`` is an ``argparse.Namespace`` or a mapping; a missing attribute or ``None`` means
    "not given". Command-line names are the field names (``--max-image-mib`` is
    ``max_image_mib``), except the short names in :data:`_CLI_NAMES` (``--model DIR`` for
    ``model_dir``, ``--timeout S`` for ``timeout_s``).
    ``settings`` is a :class:`~pneumoview.core.settings.Settings` or None (headless).
    """
    return _resolve(RunOptions, cli, settings)


@dataclass(frozen=True)
class NetworkOptions:
    """How PneumoView meets PACS peers (``echo``, ``send``, ``pull``, ``listen``, the GUI)."""

    calling_ae: str = field(default=defaults.CALLING_AE,
                            metadata=_from("pacs_calling_ae", unset=""))
    timeout_s: float = field(default=float(defaults.PACS_TIMEOUT_S),
                             metadata=_from("pacs_timeout_s"))
    #: the address ``listen`` binds
    host: str = field(default=defaults.LISTEN_HOST, metadata=_from("listen_host", unset=""))


def resolve_network(cli: Mapping[str, Any] | Any | None = None,
                    settings: Any = None) -> NetworkOptions:
    """:class:`NetworkOptions` by the same rule as :func:`resolve` (``--timeout S`` is
    ``timeout_s``)."""
    return _resolve(NetworkOptions, cli, settings)


def _resolve(cls: type, cli: Mapping[str, Any] | Any | None, settings: Any) -> Any:
    given = _given(cli)
    values: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        value = given.get(f.name)
        if value is None and f.name in _CLI_NAMES:
            value = given.get(_CLI_NAMES[f.name])
        if value is None and settings is not None and "setting" in f.metadata:
            saved = getattr(settings, f.metadata["setting"], f.metadata["unset"])
            if saved is not f.metadata["unset"] and saved != f.metadata["unset"]:
                value = saved
        if value is not None:
            values[f.name] = value
    return cls(**values)


def _given(cli: Mapping[str, Any] | Any | None) -> dict[str, Any]:
    if cli is None:
        return {}
    if isinstance(cli, Mapping):
        return dict(cli)
    return dict(vars(cli))


def resolve_threshold(explicit: float | None, saved: Mapping[str, Any] | None,
                      model_id: str, model_default: float) -> float:
    """The flagging threshold: the one given for this run, else the user's saved threshold for
    this model (``Settings.ai_thresholds[model_id]``, when it is a number in [0, 1]), else the
    model's own."""
    if explicit is not None:
        return float(explicit)
    value = (saved or {}).get(model_id)
    try:
        if value is not None and not isinstance(value, bool) and 0.0 <= float(value) <= 1.0:
            return float(value)
    except (TypeError, ValueError):
        pass
    return float(model_default)
