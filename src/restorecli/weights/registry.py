"""The model registry: `weights.toml` read into small typed specs.

A model is one published variant (e.g. ResShift real-world x4 v3). It names the
method that runs it, the task command it serves, and its components (networks
stored in separate official files, e.g. `unet` and `autoencoder`). Each
component names an architecture from the `[arch.*]` tables, so full-size
network configs are written once and shared by the models that use them.
"""

from __future__ import annotations

import copy
import os
import tomllib
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from ..errors import UsageError
from ..io.bounded import read_text_file
from .regcheck import check_registry_file
from .sources import KINDS
from .specs import ComponentSpec, ModelSpec, Source

__all__ = ["ComponentSpec", "ModelSpec", "Source", "MethodSpec", "TaskSpec", "Registry", "load_registry"]

REGISTRY_ENV = "RESTORECLI_REGISTRY"


@dataclass(frozen=True)
class MethodSpec:
    """What a method is, for the code that never imports its engine: the class that runs it
    ("module:Class", imported only when a model runs) and the task-command options beyond the
    shared ones that its models take (e.g. "resize")."""

    name: str
    engine: str = ""
    options: tuple[str, ...] = ()


@dataclass(frozen=True)
class TaskSpec:
    """A task command (`restore NAME`): its one-line help, whether every input needs a mask, and
    options of its own (beyond its methods'), e.g. the low-light task's --exposure."""

    name: str
    summary: str
    needs_mask: bool = False
    options: tuple[str, ...] = ()


@dataclass(frozen=True)
class Registry:
    models: dict[str, ModelSpec]
    methods: dict[str, MethodSpec] = field(default_factory=dict)
    tasks: dict[str, TaskSpec] = field(default_factory=dict)

    def method(self, name: str) -> MethodSpec:
        """The method's description; one without a `[methods]` table takes no extra options."""
        return self.methods.get(name) or MethodSpec(name)

    def task_options(self, task: str) -> tuple[str, ...]:
        """The extra options of a task command: those of every method a model of the task runs on."""
        methods = {m.method for m in self.models.values() if m.task == task or task in m.default_for}
        own = self.tasks[task].options if task in self.tasks else ()
        return tuple(sorted({o for name in methods for o in self.method(name).options} | set(own)))

    def get(self, name: str) -> ModelSpec:
        try:
            return self.models[name]
        except KeyError:
            raise UsageError(
                f"unknown model '{name}'",
                "run 'restore models' to list the registered models",
            ) from None

    def resolve(self, model: str | None, task: str) -> ModelSpec:
        """The model a task command runs: `model` if given (it must serve `task`), else the task's default.

        Needs no torch, so a command can check its weights before the heavy imports.
        """
        if model is None:
            return self.default_for(task)
        spec = self.get(model)
        if spec.task != task and task not in spec.default_for:
            others = ", ".join(m.name for m in self.for_task(task)) or "none"
            raise UsageError(
                f"model '{model}' does the '{spec.task}' task, not '{task}'",
                f"use 'restore {spec.task}', or one of: {others}",
            )
        return spec

    def default_for(self, task: str) -> ModelSpec:
        for spec in self.models.values():
            if task in spec.default_for:
                return spec
        for spec in self.models.values():
            if spec.task == task:
                return spec
        raise UsageError(f"no model is registered for task '{task}'", "pass --model")

    def for_task(self, task: str) -> list[ModelSpec]:
        return [m for m in self.models.values() if m.task == task]


def builtin_registry_path() -> Path:
    """The packaged weights.toml; in a source checkout, the one at the repository root."""
    package = Path(__file__).resolve().parent.parent  # the restorecli folder
    packaged = package / "weights.toml"
    if packaged.is_file():
        return packaged
    return package.parent.parent / "weights.toml"


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """Deep-merge `over` into a copy of `base` (tables merge, other values replace)."""
    out = copy.deepcopy(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _parse_sources(where: str, raw: dict[str, Any]) -> tuple[Source, ...]:
    """`sources = [...]` (tried in order), or the `url = ...` shorthand for one release URL.

    Each source's kind (weights.sources) says which fields it needs.
    """
    sources = []
    for i, s in enumerate(raw.get("sources", [])):
        kind = s.get("kind")
        bad = f"registry: {where} source {i + 1}"
        if kind not in KINDS:
            raise UsageError(f"{bad} has kind {kind!r}", f"use one of {', '.join(KINDS)}")
        KINDS[kind].validate(bad, s, raw)
        sources.append(
            Source(
                kind=kind,
                url=s.get("url"),
                repo=s.get("repo"),
                filename=s.get("filename"),
                revision=s.get("revision"),
                note=s.get("note"),
                endpoint=s.get("endpoint"),
                path=s.get("path"),
            )
        )
    if not sources and raw.get("url"):
        sources.append(Source(kind="url", url=raw["url"]))
    return tuple(sources)


def _parse_component(name: str, raw: dict[str, Any], archs: dict[str, Any], model: str = "") -> ComponentSpec:
    arch_name = raw["arch"]
    if arch_name not in archs:
        raise UsageError(f"registry: component '{name}' names unknown arch '{arch_name}'")
    arch = dict(archs[arch_name])
    kind = arch.pop("kind")
    config = _merge(arch, raw.get("config", {}))
    return ComponentSpec(
        name=name,
        kind=kind,
        config=config,
        file=raw.get("file"),
        url=raw.get("url"),
        size=raw.get("size"),
        sha256=raw.get("sha256"),
        sources=_parse_sources(f"model '{model}' component '{name}'" if model else f"component '{name}'", raw),
        container=raw.get("container"),
        sha256_checked=raw.get("sha256_checked"),
    )


def parse_registry(data: dict[str, Any]) -> Registry:
    archs = data.get("arch", {})
    models: dict[str, ModelSpec] = {}
    known = {
        "method",
        "task",
        "scale",
        "components",
        "sampler",
        "trained_steps",
        "default_steps",
        "min_steps",
        "max_steps",
        "license",
        "citation",
        "description",
        "origin",
        "default_for",
    }
    for name, raw in data.get("models", {}).items():
        try:
            trained = int(raw["trained_steps"])
            components = {
                cname: _parse_component(cname, craw, archs, name) for cname, craw in raw.get("components", {}).items()
            }
            models[name] = ModelSpec(
                name=name,
                method=raw["method"],
                task=raw["task"],
                scale=int(raw.get("scale", 1)),
                components=components,
                sampler=dict(raw.get("sampler", {})),
                trained_steps=trained,
                default_steps=int(raw.get("default_steps", trained)),
                min_steps=int(raw.get("min_steps", 1)),
                max_steps=int(raw.get("max_steps", trained)),
                license=raw.get("license", ""),
                citation=raw.get("citation", ""),
                description=raw.get("description", ""),
                origin=raw.get("origin", "official"),
                default_for=tuple(raw.get("default_for", ())),
                extra={k: v for k, v in raw.items() if k not in known},
                engine=str(data.get("methods", {}).get(raw["method"], {}).get("engine", "")),
            )
        except KeyError as exc:
            raise UsageError(f"registry: model '{name}' lacks required field {exc}") from None
    methods = {
        name: MethodSpec(name, engine=raw.get("engine", ""), options=tuple(raw.get("options", ())))
        for name, raw in data.get("methods", {}).items()
    }
    tasks = {
        name: TaskSpec(
            name,
            summary=raw.get("summary", ""),
            needs_mask=bool(raw.get("needs_mask", False)),
            options=tuple(raw.get("options", ())),
        )
        for name, raw in data.get("tasks", {}).items()
    }
    return Registry(models, methods, tasks)


def user_registry_paths() -> list[Path]:
    """Overlay files: $RESTORECLI_REGISTRY (os.pathsep-separated), then the user config one."""
    paths = [Path(p) for p in os.environ.get(REGISTRY_ENV, "").split(os.pathsep) if p]
    config = os.environ.get("XDG_CONFIG_HOME")
    if not config:
        try:
            config = str(Path.home() / ".config")
        except (RuntimeError, KeyError, OSError):  # no home directory (a service account): no user overlay
            return paths
    config_home = Path(config)
    user = config_home / "restorecli" / "weights.toml"
    if user.is_file():
        paths.append(user)
    return paths


def _read_toml(path: Path) -> dict[str, Any]:
    text = read_text_file(path, "registry file")  # bounded: --registry /dev/zero is refused, not read forever
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"registry file {path} is not valid TOML: {exc}") from None


@lru_cache(maxsize=8)
def _load_cached(paths: tuple[Path, ...]) -> Registry:
    data: dict[str, Any] = {}
    for path in paths:
        raw = _read_toml(path)
        check_registry_file(path, raw)  # names, paths and types, per file, so a bad overlay is named (weights.regcheck)
        data = _merge(data, raw)
    return parse_registry(data)


def builtin_registry() -> Registry:
    """The packaged weights.toml alone (no overlays): what a broken overlay falls back to."""
    return _load_cached((builtin_registry_path(),))


def load_registry(extra: list[Path] | tuple[Path, ...] = ()) -> Registry:
    """The built-in registry with user overlays merged on top (later files win)."""
    paths = (builtin_registry_path(), *user_registry_paths(), *extra)
    return _load_cached(tuple(Path(p) for p in paths))
