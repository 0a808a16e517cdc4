"""Where a component file can come from: one class per source kind, and the table of kinds.

A registry source (`sources = [{ kind = "hub", ... }]`) is plain data; what its
kind means lives here and nowhere else: which fields it needs (`validate`, run
when the registry is read), how it reads to a person (`describe`), whether a
copy is already on this machine (`find_local`), and how to get it (`download`).
The registry, `restore models` (catalog), the cache and `restore fetch` ask the
kind, so a new kind is one class here and one line in `KINDS`.

Imports nothing of restorecli at load time but `errors`: the registry checks
read `KINDS` before anything heavy loads. The downloaders are imported by the
methods that use them.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from ..errors import UsageError

if TYPE_CHECKING:
    from .progress import ByteProgress
    from .specs import ComponentSpec, Source

_HEX40 = re.compile(r"[0-9a-f]{40}")


class SourceKind:
    """What one kind of source needs and does; the base is a source nothing can download."""

    name: ClassVar[str]
    fetchable: ClassVar[bool] = False  # a program can download it unattended (`restore models`: "download")
    by_hand: ClassVar[bool] = False  # a person downloads it (`restore models`: "manual")
    packaged: ClassVar[bool] = False  # it ships inside the restorecli package

    def validate(self, bad: str, source: dict[str, Any], component: dict[str, Any]) -> None:
        """Raise UsageError (exit 2) if `source` lacks what this kind needs; `bad` names it for the message."""

    def describe(self, src: Source, comp: ComponentSpec) -> str:
        """The source as a person can open it (an URL where there is one)."""
        return str(src.url)

    def find_local(self, src: Source, comp: ComponentSpec) -> Path | None:
        """A copy already on this machine, outside restorecli's cache, or None."""
        return None

    def download(
        self,
        src: Source,
        comp: ComponentSpec,
        dest: Path,
        progress: ByteProgress | None,
        *,
        force: bool,
        ceiling: int | None = None,
    ) -> tuple[Path, bool]:
        """Fetch the file; returns (path, staged): staged files were written to `dest` (restorecli's
        cache, deleted on a bad checksum), others live in a cache of their own. Raises SourceFailed.

        The base downloads nothing: it says what a person has to do (`not_downloadable`)."""
        from .download import SourceFailed

        raise SourceFailed(self.not_downloadable(src, comp), manual=True)

    def not_downloadable(self, src: Source, comp: ComponentSpec) -> str:
        """Why no program downloads the file, as the failure of the base's `download` says it."""
        return f"{self.describe(src, comp)}: nothing can download a {self.name} source"


class Hub(SourceKind):
    """A file in a Hugging Face Hub repo (or a compatible server), pinned to a revision."""

    name = "hub"
    fetchable = True

    def validate(self, bad: str, source: dict[str, Any], component: dict[str, Any]) -> None:
        if not source.get("repo") or not source.get("revision"):
            raise UsageError(f"{bad} (hub) needs repo and revision", "pin revision to a 40-hex commit id")
        if not _HEX40.fullmatch(source["revision"]) and not component.get("sha256"):
            raise UsageError(
                f"{bad} (hub) revision {source['revision']!r} is not a 40-hex commit id",
                "pin the commit, or give the component a sha256",
            )

    def describe(self, src: Source, comp: ComponentSpec) -> str:
        from .download import hub_url

        return hub_url(src, comp)

    def find_local(self, src: Source, comp: ComponentSpec) -> Path | None:
        from .download import SourceFailed, hub_download

        try:
            return hub_download(src, comp, local_only=True, progress=None)
        except SourceFailed:
            return None

    def download(
        self,
        src: Source,
        comp: ComponentSpec,
        dest: Path,
        progress: ByteProgress | None,
        *,
        force: bool,
        ceiling: int | None = None,
    ) -> tuple[Path, bool]:
        from .download import hub_download

        return hub_download(src, comp, local_only=False, progress=progress, force=force), False


class Url(SourceKind):
    """A release URL, downloaded by restorecli itself into its cache."""

    name = "url"
    fetchable = True

    def validate(self, bad: str, source: dict[str, Any], component: dict[str, Any]) -> None:
        if not source.get("url"):
            raise UsageError(f"{bad} (url) needs url")

    def download(
        self,
        src: Source,
        comp: ComponentSpec,
        dest: Path,
        progress: ByteProgress | None,
        *,
        force: bool,
        ceiling: int | None = None,
    ) -> tuple[Path, bool]:
        from .download import url_download

        label = comp.file or dest.name
        url_download(src.url or "", dest, expected_size=comp.size, label=label, progress=progress, ceiling=ceiling)
        return dest, True


class Manual(SourceKind):
    """A file a person has to download (behind a form, a drive link, or not published: a note)."""

    name = "manual"
    by_hand = True

    def validate(self, bad: str, source: dict[str, Any], component: dict[str, Any]) -> None:
        if not source.get("url") and not source.get("note"):
            raise UsageError(f"{bad} (manual) needs url")

    def describe(self, src: Source, comp: ComponentSpec) -> str:
        return f"{src.url or src.note} (download by hand)"

    def not_downloadable(self, src: Source, comp: ComponentSpec) -> str:
        note = f" ({src.note})" if src.note and src.url else ""
        return f"{src.url or src.note}{note}"


class Bundled(SourceKind):
    """A bundle shipped inside the restorecli package (`path` relative to the restorecli folder)."""

    name = "bundled"
    packaged = True

    def validate(self, bad: str, source: dict[str, Any], component: dict[str, Any]) -> None:
        if not source.get("path"):
            raise UsageError(f"{bad} (bundled) needs path", "the bundle's path inside the restorecli package")

    def describe(self, src: Source, comp: ComponentSpec) -> str:
        return f"bundled with restorecli ({src.path})"

    def not_downloadable(self, src: Source, comp: ComponentSpec) -> str:
        # asked only when the cache's packaged_bundle() found no file: a broken installation
        return f"{self.describe(src, comp)}: the file is missing from this installation; reinstall restorecli"


KINDS: dict[str, SourceKind] = {kind.name: kind for kind in (Hub(), Url(), Manual(), Bundled())}


def source_kind(src: Source) -> SourceKind:
    """The kind of a parsed source (the registry accepted only names in KINDS)."""
    return KINDS[src.kind]


def describe(src: Source, comp: ComponentSpec) -> str:
    """A source as an URL a person can open (a Hub file as its resolve URL on the endpoint in use)."""
    return source_kind(src).describe(src, comp)
