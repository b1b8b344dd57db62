"""The one plugin loader: every plugin capability (IDE adapters, MCP tools, templates,
skills, verifiers) is found here, through Python entry points.

A plugin is a distribution with a manifest (an entry point in `loopengt.plugins` naming a
`PluginManifest` or a dict of its fields) and one entry point per thing it adds, in the group
of that capability. Why a manifest: the loader can say which loopengt versions a plugin was
written for before importing any of its code, and `loopengt doctor` can list what each plugin
claims to add. A plugin that has no manifest, declares an incompatible version, or fails to
import is reported with the reason and skipped; it never breaks the command that looked.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from importlib.metadata import EntryPoint, entry_points
from typing import Any, Literal

from packaging.specifiers import InvalidSpecifier, SpecifierSet
from pydantic import BaseModel, Field, ValidationError

from loopengt import __version__
from loopengt.errors import UserInputError

Capability = Literal["adapters", "mcp_tools", "templates", "skills", "verifiers"]
CAPABILITIES: tuple[Capability, ...] = ("adapters", "mcp_tools", "templates", "skills", "verifiers")
MANIFEST_GROUP = "loopengt.plugins"


def group(capability: Capability) -> str:
    """The entry point group of ``capability``, e.g. `loopengt.verifiers`."""
    return f"loopengt.{capability}"


class PluginManifest(BaseModel):
    """What a plugin says about itself; its `loopengt.plugins` entry point names one."""

    name: str = Field(description="The plugin's name, as listed by `loopengt doctor`.")
    version: str = Field(description="The plugin's own version.")
    description: str = Field(default="", description="One line on what it adds.")
    capabilities: list[Capability] = Field(
        description="The entry point groups it adds to, without the `loopengt.` prefix; an "
        "entry point in any other group is skipped."
    )
    loopengt: str = Field(
        default="",
        description="The loopengt versions it works with, a PEP 440 specifier such as "
        "'>=0.1,<0.2'; empty means any.",
    )


@dataclass
class Entry:
    """One thing a plugin adds: a loaded object, or the reason it was skipped."""

    capability: Capability
    name: str
    plugin: str
    value: Any = None
    problem: str | None = None


@dataclass
class Plugin:
    """One plugin distribution, as `loopengt doctor` lists it."""

    distribution: str
    manifest: PluginManifest | None = None
    problem: str | None = None
    """Why the whole plugin is skipped (no manifest, an incompatible version)."""
    entries: list[Entry] = field(default_factory=list)


def load(capability: Capability) -> list[Entry]:
    """Every entry point of ``capability``, loaded, with broken ones carrying their reason."""
    manifests: dict[str, tuple[PluginManifest | None, str | None]] = {}
    entries = []
    for ep in entry_points(group=group(capability)):
        dist = _dist(ep)
        if dist not in manifests:
            manifests[dist] = _manifest(dist)
        manifest, problem = manifests[dist]
        entries.append(_entry(capability, ep, dist, manifest, problem))
    return entries


def find(capability: Capability, name: str) -> Any:
    """The object a plugin registers as ``name`` in ``capability``; a `UserInputError`
    saying why when none is usable."""
    found = [entry for entry in load(capability) if entry.name == name]
    for entry in found:
        if entry.problem is None:
            return entry.value
    if found:
        raise UserInputError(f"{group(capability)} plugin {name!r}: {found[0].problem}")
    raise UserInputError(f"{name!r} not found (no {group(capability)!r} entry point)")


def plugins() -> list[Plugin]:
    """Every installed plugin with its manifest and all it adds (loaded, or why not)."""
    found: dict[str, Plugin] = {}
    for ep in entry_points(group=MANIFEST_GROUP):
        dist = _dist(ep)
        manifest, problem = _manifest(dist)
        found.setdefault(dist, Plugin(dist, manifest, problem))
    for capability in CAPABILITIES:
        for entry in load(capability):
            plugin = found.setdefault(entry.plugin, Plugin(entry.plugin))
            if plugin.manifest is None and plugin.problem is None:
                plugin.problem = entry.problem
            plugin.entries.append(entry)
    return sorted(found.values(), key=lambda plugin: plugin.distribution)


def _dist(ep: EntryPoint) -> str:
    return ep.dist.name if ep.dist is not None else ep.value.partition(":")[0]


def _manifest(dist: str) -> tuple[PluginManifest | None, str | None]:
    """The manifest of distribution ``dist`` and, if the plugin is unusable, why."""
    eps = [ep for ep in entry_points(group=MANIFEST_GROUP) if _dist(ep) == dist]
    if not eps:
        return None, f"no manifest (a {MANIFEST_GROUP!r} entry point)"
    try:
        value = eps[0].load()
        manifest = (
            value if isinstance(value, PluginManifest) else PluginManifest.model_validate(value)
        )
    except ValidationError as exc:
        return None, f"invalid manifest: {_first_error(exc)}"
    except (Exception, SystemExit) as exc:  # a plugin's import can raise anything
        return None, f"manifest failed to load ({reason(exc)})"
    return manifest, _incompatible(manifest)


def _incompatible(manifest: PluginManifest) -> str | None:
    if not manifest.loopengt:
        return None
    try:
        supported = SpecifierSet(manifest.loopengt)
    except InvalidSpecifier:
        return f"invalid loopengt version specifier {manifest.loopengt!r}"
    if supported.contains(__version__, prereleases=True):
        return None
    return f"supports loopengt {manifest.loopengt}, this is {__version__}"


def _entry(
    capability: Capability,
    ep: EntryPoint,
    dist: str,
    manifest: PluginManifest | None,
    problem: str | None,
) -> Entry:
    entry = Entry(capability, ep.name, dist)
    if problem is None and manifest is not None and capability not in manifest.capabilities:
        problem = f"{capability!r} is not among the manifest's capabilities"
    if problem is not None:
        entry.problem = problem
        return entry
    try:
        entry.value = ep.load()
    except (Exception, SystemExit) as exc:  # a broken plugin is listed, never fatal
        entry.problem = f"failed to load ({reason(exc)})"
    return entry


def reason(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _first_error(exc: ValidationError) -> str:
    error = exc.errors()[0]
    where = ".".join(str(part) for part in error["loc"])
    return f"{where}: {error['msg']}" if where else str(error["msg"])


def usable(capability: Capability) -> Iterator[Entry]:
    """The entries of ``capability`` that loaded."""
    return (entry for entry in load(capability) if entry.problem is None)
