"""The Claude Code adapter as a loopengt plugin (entry points in pyproject.toml)."""

from loopengt.ide.adapters import CLAUDE_CODE as adapter
from loopengt.plugins import PluginManifest

manifest = PluginManifest(
    name="claude-code",
    version="0.1.0",
    description="`loopengt init --ide claude-code`: Claude Code's MCP config and the loop commands",
    capabilities=["adapters"],
    loopengt=">=0.1,<0.2",
)

__all__ = ["adapter", "manifest"]
