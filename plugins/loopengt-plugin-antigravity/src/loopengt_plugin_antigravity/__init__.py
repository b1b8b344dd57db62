"""The Antigravity adapter as a loopengt plugin (entry points in pyproject.toml)."""

from loopengt.ide.adapters import ANTIGRAVITY as adapter
from loopengt.plugins import PluginManifest

manifest = PluginManifest(
    name="antigravity",
    version="0.1.0",
    description="`loopengt init --ide antigravity`: Antigravity's MCP config and the loop commands",
    capabilities=["adapters"],
    loopengt=">=0.1,<0.2",
)

__all__ = ["adapter", "manifest"]
