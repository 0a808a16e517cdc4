"""Validate one registry file (weights.toml or an overlay) as it is read, before any use.

Each file is checked on its own, before overlays are merged, so an error names
the file it is in, the model (and component, source) and the field: one line,
exit 2 (UsageError). What is checked (docs/weights.md, "Registry validation"):

- names and path-like values: model and component names, a component's `file`,
  a hub source's `filename`, `repo` and `revision`, a bundled source's `path`
  must be plain relative names: no absolute path, no `..`, no backslash, so
  nothing they name can leave its cache folder;
- types: tables are tables, `sources` a list of tables, step counts and `scale`
  positive integers, `size` a non-negative integer, `sha256` 64 hex digits,
  text fields strings, `default_for` a list of strings;
- URLs (`url`, `endpoint`) are http(s) with a host (no `file://`);
- a component or a source has no field the loader does not know (a typo such as
  `filname` would otherwise be ignored silently).

No imports from other restorecli modules except `errors`, `safepaths` and
`sources` (free of others at load time), so the module can move freely.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ..errors import UsageError
from .safepaths import relative_name_problem
from .sources import KINDS

MODEL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]*")
COMPONENT_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_-]*")
REPO_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)?")


class _Where:
    """Where in which file a value sits, for the one-line message."""

    def __init__(
        self, path: Path | str, model: str | None = None, comp: str | None = None, source: int | None = None
    ) -> None:
        self.path, self.model, self.comp, self.source = path, model, comp, source

    def fail(self, field: str, value: Any, problem: str, hint: str) -> UsageError:
        shown = repr(value)
        if len(shown) > 80:
            shown = shown[:77] + "..."
        return self.say(f"field {field!r} = {shown} {problem}", hint)

    def say(self, text: str, hint: str) -> UsageError:
        parts = [f"registry {self.path}:"]
        if self.model is not None:
            parts.append(f"model {self.model!r}")
        if self.comp is not None:
            parts.append(f"component {self.comp!r}")
        if self.source is not None:
            parts.append(f"source {self.source}")
        parts.append(text)
        return UsageError(" ".join(parts), hint)


PATH_HINT = "use a plain relative name: no leading '/', no '..', no backslash (docs/weights.md)"


def _name(where: _Where, field: str, value: Any, *, folders: bool) -> None:
    problem = relative_name_problem(value, folders=folders)
    if problem is not None:
        raise where.fail(field, value, problem, PATH_HINT)


MODEL_INTS = ("trained_steps", "default_steps", "min_steps", "max_steps", "scale")
MODEL_TEXTS = ("method", "task", "license", "citation", "description", "origin")
MODEL_TABLES = ("components", "sampler")
COMPONENT_FIELDS = frozenset(
    {"arch", "file", "url", "size", "sha256", "sha256_checked", "sources", "container", "config"}
)
# how a published sha256 was confirmed: absent = taken from one source only, unverified
SHA256_CHECKS = ("independent-copies",)
SOURCE_FIELDS = frozenset({"kind", "url", "repo", "filename", "revision", "note", "endpoint", "path"})
SHA256 = re.compile(r"[0-9a-fA-F]{64}")
METHOD_FIELDS = frozenset({"engine", "options"})
TASK_FIELDS = frozenset({"summary", "needs_mask", "options"})
ENGINE_PATH = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*:[A-Za-z_][A-Za-z0-9_]*")
OPTION_NAME = re.compile(r"[a-z][a-z0-9_]*")


def _kind(value: Any) -> str:
    return {
        str: "a string",
        int: "an integer",
        float: "a number",
        bool: "a boolean",
        list: "a list",
        dict: "a table",
    }.get(type(value), type(value).__name__)


def _text(where: _Where, field: str, value: Any) -> None:
    if not isinstance(value, str):
        raise where.fail(field, value, f"is {_kind(value)}, not a string", f'write {field} = "..."')


def _table(where: _Where, field: str, value: Any) -> None:
    if not isinstance(value, dict):
        raise where.fail(field, value, f"is {_kind(value)}, not a table", f"write [{field}] or {field} = {{ ... }}")


def _count(where: _Where, field: str, value: Any, least: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < least:
        raise where.fail(field, value, f"is not an integer >= {least}", f"write {field} = <integer>, without quotes")


def _url(where: _Where, field: str, value: Any) -> None:
    _text(where, field, value)
    try:
        parts = urlsplit(value)
        host = parts.hostname
        parts.port  # noqa: B018  (raises ValueError for a malformed port)
    except ValueError:
        host, parts = None, None
    if parts is None or parts.scheme not in ("http", "https") or not host or any(c.isspace() for c in value):
        raise where.fail(
            field,
            value,
            "is not an http(s) URL with a host",
            "write the full address, e.g. https://host/path/file.pth (file:// is not accepted)",
        )


def check_registry_file(path: Path | str, data: dict[str, Any]) -> None:
    """Raise UsageError (exit 2) for the first invalid value of one registry file's data."""
    top = _Where(path)
    for table in ("models", "arch", "methods", "tasks"):
        if table in data:
            _table(top, table, data[table])
    _check_methods_and_tasks(top, data)
    for name, raw in data.get("arch", {}).items():
        _table(top, f"arch.{name}", raw)
        if "kind" in raw:
            _text(top, f"arch.{name}.kind", raw["kind"])
    for name, raw in data.get("models", {}).items():
        where = _Where(path, name)
        if ".." in name or not MODEL_NAME.fullmatch(name):
            raise where.fail(
                "name",
                name,
                "is not a plain model name",
                "use letters, digits, '.', '_', '+' and '-' (a model name is part of a file name)",
            )
        if not isinstance(raw, dict):
            raise top.fail(f"models.{name}", raw, f"is {_kind(raw)}, not a table", f"write [models.{name}]")
        _check_model(where, raw)
        for cname, craw in raw.get("components", {}).items():
            cwhere = _Where(path, name, cname)
            if not COMPONENT_NAME.fullmatch(cname):
                raise cwhere.fail(
                    "name",
                    cname,
                    "is not a plain component name",
                    "use letters, digits, '_' and '-' (a component name prefixes tensor names)",
                )
            if not isinstance(craw, dict):
                raise where.fail(
                    f"components.{cname}",
                    craw,
                    f"is {_kind(craw)}, not a table",
                    f"write [models.{name}.components.{cname}]",
                )
            _check_component(path, name, cname, craw)


def _check_methods_and_tasks(top: _Where, data: dict[str, Any]) -> None:
    """`[methods.NAME]`: engine = "module:Class", options = ["resize"]; `[tasks.NAME]`: summary, needs_mask,
    options (those the task's own default model takes, e.g. ["exposure"])."""
    for name, raw in data.get("methods", {}).items():
        _table(top, f"methods.{name}", raw)
        _known_fields(top, raw, METHOD_FIELDS, f"methods.{name}")
        if "engine" in raw and (not isinstance(raw["engine"], str) or not ENGINE_PATH.fullmatch(raw["engine"])):
            raise top.fail(
                f"methods.{name}.engine", raw["engine"], "is not module:Class", 'write "package.module:Class"'
            )
        options = raw.get("options", [])
        if not isinstance(options, list) or not all(isinstance(o, str) and OPTION_NAME.fullmatch(o) for o in options):
            raise top.fail(f"methods.{name}.options", options, "is not a list of option names", 'write ["resize"]')
    for name, raw in data.get("tasks", {}).items():
        _table(top, f"tasks.{name}", raw)
        _known_fields(top, raw, TASK_FIELDS, f"tasks.{name}")
        if not MODEL_NAME.fullmatch(name):
            raise top.fail(f"tasks.{name}", name, "is not a plain task name", "use letters, digits, '-' and '_'")
        if "summary" in raw:
            _text(top, f"tasks.{name}.summary", raw["summary"])
        if "needs_mask" in raw and not isinstance(raw["needs_mask"], bool):
            raise top.fail(f"tasks.{name}.needs_mask", raw["needs_mask"], "is not true or false", "write true")
        options = raw.get("options", [])
        if not isinstance(options, list) or not all(isinstance(o, str) and OPTION_NAME.fullmatch(o) for o in options):
            raise top.fail(f"tasks.{name}.options", options, "is not a list of option names", 'write ["exposure"]')


def _check_model(where: _Where, raw: dict[str, Any]) -> None:
    for field in MODEL_TABLES:
        if field in raw:
            _table(where, field, raw[field])
    for field in MODEL_TEXTS:
        if field in raw:
            _text(where, field, raw[field])
    for field in MODEL_INTS:
        if field in raw:
            _count(where, field, raw[field], 1)
    if "default_for" in raw:
        value = raw["default_for"]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise where.fail(
                "default_for", value, f"is {_kind(value)}, not a list of task names", 'write default_for = ["task"]'
            )


def _check_component(path: Path | str, model: str, comp: str, craw: dict[str, Any]) -> None:
    where = _Where(path, model, comp)
    _known_fields(where, craw, COMPONENT_FIELDS, "component")
    for field in ("arch", "container"):
        if field in craw:
            _text(where, field, craw[field])
    if "config" in craw:
        _table(where, "config", craw["config"])
    if "file" in craw:
        _name(where, "file", craw["file"], folders=False)
    if "url" in craw:
        _url(where, "url", craw["url"])
    if "size" in craw:
        _count(where, "size", craw["size"], 0)
    if "sha256" in craw:
        value = craw["sha256"]
        if not isinstance(value, str) or not SHA256.fullmatch(value):
            raise where.fail("sha256", value, "is not 64 hex digits", "copy the full sha256 (sha256sum FILE)")
    if "sha256_checked" in craw:
        value = craw["sha256_checked"]
        if value not in SHA256_CHECKS or "sha256" not in craw:
            raise where.fail(
                "sha256_checked",
                value,
                "is not a known check of a given sha256",
                f"use {', '.join(SHA256_CHECKS)} next to sha256",
            )
    if "sources" in craw:
        sources = craw["sources"]
        if not isinstance(sources, list):
            raise where.fail(
                "sources",
                sources,
                f"is {_kind(sources)}, not a list of tables",
                'write sources = [{ kind = "url", url = "https://..." }]',
            )
        for i, src in enumerate(sources, 1):
            swhere = _Where(path, model, comp, i)
            if not isinstance(src, dict):
                raise where.fail(
                    "sources",
                    src,
                    f"holds {_kind(src)} as source {i}, not a table",
                    'write sources = [{ kind = "url", url = "https://..." }]',
                )
            _check_source(swhere, src)


def _known_fields(where: _Where, raw: dict[str, Any], allowed: frozenset[str], what: str) -> None:
    """A typo such as `filname` is an error naming the allowed fields, not silently ignored."""
    for field in raw:
        if field not in allowed:
            raise where.fail(
                field, raw[field], f"is not a {what} field", f"the fields are {', '.join(sorted(allowed))}"
            )


def _check_source(where: _Where, src: dict[str, Any]) -> None:
    _known_fields(where, src, SOURCE_FIELDS, "source")
    for field in ("kind", "note"):
        if field in src:
            _text(where, field, src[field])
    if "kind" in src and src["kind"] not in KINDS:
        raise where.say(f"has kind {src['kind']!r} (field 'kind')", f"use one of {', '.join(KINDS)}")
    for field in ("url", "endpoint"):
        if field in src:
            _url(where, field, src[field])
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
