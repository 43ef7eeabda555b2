"""A PACS node as the user writes it, parsed once, checked, and printable without secrets.

``dicom://AET@HOST:PORT`` is a DIMSE peer (``dicom+tls://`` the same over TLS);
``http(s)://HOST[:PORT]/PATH`` a DICOMweb service root. Credentials in a URL are refused: they
would end up in the settings file, shell history and logs.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from pneumoview.core import defaults
from pneumoview.core.errors import PneumoViewError

DIMSE_SCHEMES = ("dicom", "dicom+tls")
WEB_SCHEMES = ("http", "https")
#: PS3.5 AE title: 1-16 characters of the default repertoire, no backslash or control
#: characters, not only spaces.
_AE_TITLE = re.compile(r"^[\x20-\x5b\x5d-\x7e]{1,16}$")
DEFAULT_CALLING_AE = defaults.CALLING_AE


class PacsError(PneumoViewError):
    """A network operation failed: the peer refused, timed out or answered with a failure."""


def check_ae_title(title: str, what: str = "AE title") -> str:
    """``title`` stripped, or PacsError when it is not a valid AE title."""
    text = str(title).strip()
    if not _AE_TITLE.match(text):
        raise PacsError(f"{what} {title!r} is not a valid AE title (1-16 characters, no "
                        "backslash or control characters)")
    return text


@dataclass(frozen=True)
class PacsNode:
    """One peer: ``kind`` is "dimse" or "web"."""

    kind: str
    host: str
    port: int
    ae_title: str = ""
    url: str = ""
    tls: bool = False

    @property
    def label(self) -> str:
        """How messages name the node (no credentials: a URL with them is refused)."""
        if self.kind == "web":
            return self.url
        scheme = "dicom+tls" if self.tls else "dicom"
        return f"{scheme}://{self.ae_title}@{self.host}:{self.port}"


def parse_node(text: str) -> PacsNode:
    """Parse a node; PacsError names what is wrong with it."""
    raw = str(text).strip()
    parts = urlsplit(raw)
    scheme = parts.scheme.lower()
    if scheme in WEB_SCHEMES:
        return _web_node(raw, parts)
    if scheme in DIMSE_SCHEMES:
        return _dimse_node(raw, parts, scheme)
    raise PacsError(f"{raw!r} is not a PACS node: write dicom://AET@HOST:PORT, "
                    "dicom+tls://AET@HOST:PORT or http(s)://HOST/PATH")


def _port(parts: object, raw: str, default: int | None) -> int:
    try:
        port = parts.port  # type: ignore[attr-defined]
    except ValueError:
        raise PacsError(f"{raw!r}: the port is not a number from 1 to 65535") from None
    if port is None:
        if default is None:
            raise PacsError(f"{raw!r}: a DICOM node needs a port (dicom://AET@HOST:PORT)")
        return default
    if not 0 < port < 65536:
        raise PacsError(f"{raw!r}: the port is not a number from 1 to 65535")
    return int(port)


def _dimse_node(raw: str, parts: object, scheme: str) -> PacsNode:
    netloc = parts.netloc  # type: ignore[attr-defined]
    if "@" not in netloc or not parts.hostname:  # type: ignore[attr-defined]
        raise PacsError(f"{raw!r}: write the called AE title and the host, "
                        "dicom://AET@HOST:PORT")
    title = netloc.rsplit("@", 1)[0]
    if parts.password is not None:  # type: ignore[attr-defined]
        raise PacsError(f"{raw!r}: a DICOM node has no password; remove it")
    return PacsNode(kind="dimse", host=parts.hostname,  # type: ignore[attr-defined]
                    port=_port(parts, raw, None), ae_title=check_ae_title(title, "called AE"),
                    tls=scheme == "dicom+tls")


def _web_node(raw: str, parts: object) -> PacsNode:
    if parts.username or parts.password:  # type: ignore[attr-defined]
        raise PacsError("a DICOMweb URL with a user name or password is refused (it would be "
                        "kept in logs and history); use a URL without credentials")
    if not parts.hostname:  # type: ignore[attr-defined]
        raise PacsError(f"{raw!r}: no host")
    tls = parts.scheme.lower() == "https"  # type: ignore[attr-defined]
    url = raw.rstrip("/")
    return PacsNode(kind="web", host=parts.hostname,  # type: ignore[attr-defined]
                    port=_port(parts, raw, 443 if tls else 80), url=url, tls=tls)
