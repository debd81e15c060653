"""The Debian archive URIs of the host's own apt configuration.

The image is built from the same mirror the host uses (nothing is hard-coded): deb822
``*.sources`` files and one-line ``*.list`` files are read, ``deb`` entries are split into
the main archive and the security archive, and :func:`write_sources` writes a deb822 file for
the guest suite that ``mmdebstrap`` takes as its mirror argument.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .errors import ImageBuildError

APT_DIR = Path("/etc/apt")


@dataclass(frozen=True)
class AptSource:
    """One ``deb`` entry: its URI, suites and keyring (if given)."""

    uri: str
    suites: tuple[str, ...]
    signed_by: str | None = None

    @property
    def is_security(self) -> bool:
        """True for the security archive (``<suite>-security`` or ``.../debian-security``)."""
        return self.uri.rstrip("/").endswith("-security") or any(
            s.endswith("-security") or s.endswith("/updates") for s in self.suites
        )


def _parse_deb822(text: str) -> list[AptSource]:
    found = []
    for stanza in text.split("\n\n"):
        fields: dict[str, str] = {}
        key = None
        for line in stanza.splitlines():
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            if line[0] in " \t" and key:
                fields[key] += " " + line.strip()
                continue
            key, _, value = line.partition(":")
            key = key.strip().lower()
            fields[key] = value.strip()
        if "deb" not in fields.get("types", "").split():
            continue
        if fields.get("enabled", "yes").lower() == "no":
            continue
        for uri in fields.get("uris", "").split():
            found.append(AptSource(uri, tuple(fields.get("suites", "").split()),
                                   fields.get("signed-by")))
    return found


def _parse_one_line(text: str) -> list[AptSource]:
    found = []
    for line in text.splitlines():
        words = line.split("#", 1)[0].split()
        if len(words) < 3 or words[0] != "deb":
            continue
        words = words[1:]
        signed_by = None
        if words[0].startswith("["):
            opts = []
            while words and not words[0].endswith("]"):
                opts.append(words.pop(0))
            opts.append(words.pop(0))
            for opt in " ".join(opts).strip("[]").split():
                if opt.startswith("signed-by="):
                    signed_by = opt.split("=", 1)[1]
        if len(words) >= 2:
            found.append(AptSource(words[0], (words[1],), signed_by))
    return found


def host_sources(apt_dir: Path = APT_DIR) -> list[AptSource]:
    """All ``deb`` entries configured on the host, in apt's file order."""
    found: list[AptSource] = []
    main_list = apt_dir / "sources.list"
    if main_list.is_file():
        found += _parse_one_line(main_list.read_text())
    parts = apt_dir / "sources.list.d"
    if parts.is_dir():
        for path in sorted(parts.iterdir()):
            if path.suffix == ".sources":
                found += _parse_deb822(path.read_text())
            elif path.suffix == ".list":
                found += _parse_one_line(path.read_text())
    return found


def write_sources(suite: str, dest: Path, apt_dir: Path = APT_DIR) -> tuple[str, str | None]:
    """Write a deb822 sources file for ``suite`` from the host's URIs.

    Returns:
        The main and the security archive URIs (the latter ``None`` if the host has none).

    Raises:
        ImageBuildError: the host has no usable Debian ``deb`` entry.
    """
    sources = host_sources(apt_dir)
    main = next((s for s in sources if not s.is_security), None)
    security = next((s for s in sources if s.is_security), None)
    if main is None:
        raise ImageBuildError(
            f"no Debian 'deb' entry in {apt_dir}/sources.list or {apt_dir}/sources.list.d; "
            "the guest image is built from the host's own mirror"
        )
    keyring = main.signed_by or "/usr/share/keyrings/debian-archive-keyring.gpg"
    text = (
        f"Types: deb\nURIs: {main.uri}\nSuites: {suite} {suite}-updates\n"
        f"Components: main\nSigned-By: {keyring}\n"
    )
    if security is not None:
        text += (
            f"\nTypes: deb\nURIs: {security.uri}\nSuites: {suite}-security\n"
            f"Components: main\nSigned-By: {security.signed_by or keyring}\n"
        )
    dest.write_text(text)
    return main.uri, security.uri if security else None
