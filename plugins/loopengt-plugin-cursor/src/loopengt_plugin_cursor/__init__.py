"""The Cursor adapter as a loopengt plugin (entry points in pyproject.toml)."""

from loopengt.ide.adapters import CURSOR as adapter
from loopengt.plugins import PluginManifest

manifest = PluginManifest(
    name="cursor",
    version="0.1.0",
    description="`loopengt init --ide cursor`: Cursor's MCP config and the loop commands",
    capabilities=["adapters"],
    loopengt=">=0.1,<0.2",
)

__all__ = ["adapter", "manifest"]
