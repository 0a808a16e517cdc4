"""The typed specs the registry reads `weights.toml` into: models, their components and sources.

Apart from the registry so that the modules the registry itself relies on (the
source kinds, the cache, the downloaders) can name these types without
importing the registry.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..errors import UsageError


@dataclass(frozen=True)
class Source:
    """One place a component file can be fetched from, tried in registry order."""

    kind: str  # a name in weights.sources.KINDS: "hub", "url", "manual", "bundled"
    url: str | None = None
    repo: str | None = None
    filename: str | None = None
    revision: str | None = None
    note: str | None = None
    endpoint: str | None = None  # hub only: a Hub-compatible server other than $HF_ENDPOINT
    path: str | None = None  # bundled only: a bundle shipped inside the package, relative to restorecli/


@dataclass(frozen=True)
class ComponentSpec:
    """One network of a model and the official file that holds its weights."""

    name: str
    kind: str  # network builder, e.g. "resshift.unet"
    config: dict[str, Any]
    file: str | None = None
    url: str | None = None
    size: int | None = None
    sha256: str | None = None
    sources: tuple[Source, ...] = ()
    container: str | None = None  # how the official file wraps the state dict
    sha256_checked: str | None = None  # "independent-copies": the pin matches copies from other hosts too


@dataclass(frozen=True)
class ModelSpec:
    """One registered model variant."""

    name: str
    method: str
    task: str
    scale: int
    components: dict[str, ComponentSpec]
    sampler: dict[str, Any]
    trained_steps: int
    default_steps: int
    min_steps: int
    max_steps: int
    license: str = ""
    citation: str = ""
    description: str = ""
    origin: str = "official"
    default_for: tuple[str, ...] = ()
    extra: dict[str, Any] = field(default_factory=dict)
    engine: str = ""  # "module:Class" from the method's [methods] table; "" = look the method up

    def check_steps(self, steps: int | None) -> int:
        """Return the step count to use, or raise a usage error listing the accepted ones."""
        if steps is None:
            return self.default_steps
        if not self.min_steps <= steps <= self.max_steps:
            accepted = (
                str(self.min_steps) if self.min_steps == self.max_steps else f"{self.min_steps} to {self.max_steps}"
            )
            raise UsageError(
                f"--steps {steps} is not accepted by model '{self.name}' (trained with {self.trained_steps} steps)",
                f"use --steps {accepted}",
            )
        return steps
