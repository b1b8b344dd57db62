"""The Codex adapter as a loopengt plugin (entry points in pyproject.toml)."""

from loopengt.ide.adapters import CODEX as adapter
from loopengt.plugins import PluginManifest

manifest = PluginManifest(
    name="codex",
    version="0.1.0",
    description="`loopengt init --ide codex`: Codex's MCP config and the loop commands",
    capabilities=["adapters"],
    loopengt=">=0.1,<0.2",
)

__all__ = ["adapter", "manifest"]
