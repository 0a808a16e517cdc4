"""Validate one registry file (weights.toml or an overlay) as it is read, before any use.

Each file is checked on its own, before overlays are merged, so an error names
the file it is in, the model (and component, source) and the field: one line,
exit 2 (UsageError). What is checked (docs/weights.md, "Registry validation"):

- names and path-like values: model and component names, a component's `file`,
  a hub source's `filename`, `repo` and `revision`, a bundled source's `path`
  must be plain relative names: no absolute path, no `..`, no backslash, so
  nothing they name can leave its cache folder.

No imports from other restorecli modules except `errors` and `safepaths`
(itself free of them), so the module can move freely.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from .errors import UsageError
from .safepaths import relative_name_problem

MODEL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]*")
COMPONENT_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_-]*")
REPO_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)?")


class _Where:
    """Where in which file a value sits, for the one-line message."""

    def __init__(self, path: Path | str, model: str | None = None, comp: str | None = None,
                 source: int | None = None) -> None:
        self.path, self.model, self.comp, self.source = path, model, comp, source

    def fail(self, field: str, value: Any, problem: str, hint: str) -> UsageError:
        parts = [f"registry {self.path}:"]
        if self.model is not None:
            parts.append(f"model {self.model!r}")
        if self.comp is not None:
            parts.append(f"component {self.comp!r}")
        if self.source is not None:
            parts.append(f"source {self.source}")
        shown = repr(value)
        if len(shown) > 80:
            shown = shown[:77] + "..."
        parts.append(f"field {field!r} = {shown} {problem}")
        return UsageError(" ".join(parts), hint)


PATH_HINT = "use a plain relative name: no leading '/', no '..', no backslash (docs/weights.md)"


def _name(where: _Where, field: str, value: Any, *, folders: bool) -> None:
    problem = relative_name_problem(value, folders=folders)
    if problem is not None:
        raise where.fail(field, value, problem, PATH_HINT)


def check_registry_file(path: Path | str, data: dict[str, Any]) -> None:
    """Raise UsageError (exit 2) for the first invalid value of one registry file's data."""
    models = data.get("models", {})
    if not isinstance(models, dict):
        return
    for name, raw in models.items():
        where = _Where(path, name)
        if ".." in name or not MODEL_NAME.fullmatch(name):
            raise where.fail("name", name, "is not a plain model name",
                             "use letters, digits, '.', '_', '+' and '-' (a model name is part of a file name)")
        if not isinstance(raw, dict):
            continue
        comps = raw.get("components", {})
        if not isinstance(comps, dict):
            continue
        for cname, craw in comps.items():
            cwhere = _Where(path, name, cname)
            if not COMPONENT_NAME.fullmatch(cname):
                raise cwhere.fail("name", cname, "is not a plain component name",
                                  "use letters, digits, '_' and '-' (a component name prefixes tensor names)")
            if not isinstance(craw, dict):
                continue
            if "file" in craw:
                _name(cwhere, "file", craw["file"], folders=False)
            sources = craw.get("sources", [])
            if not isinstance(sources, list):
                continue
            for i, src in enumerate(sources, 1):
                if isinstance(src, dict):
                    _check_source_paths(_Where(path, name, cname, i), src)


def _check_source_paths(where: _Where, src: dict[str, Any]) -> None:
    if "filename" in src:
        _name(where, "filename", src["filename"], folders=True)
    if "path" in src:
        _name(where, "path", src["path"], folders=True)
    if "revision" in src:
        _name(where, "revision", src["revision"], folders=True)
    if "repo" in src:
        repo = src["repo"]
        if not isinstance(repo, str) or ".." in repo or not REPO_ID.fullmatch(repo):
            raise where.fail("repo", repo, "is not a Hub repo id", "write it as ORG/NAME")
