"""IDE adapters: `loopengt init --ide NAME` writes what each IDE reads to use loopengt."""

from loopengt.ide.adapters import Adapter, Installed, Target, adapters, install, server_command
from loopengt.ide.files import Change, json_entry, markdown_section, owned, toml_entry
from loopengt.ide.skills import BUILTIN_SKILLS, Skill, all_skills, frontmatter

__all__ = [
    "BUILTIN_SKILLS",
    "Adapter",
    "Change",
    "Installed",
    "Skill",
    "Target",
    "adapters",
    "all_skills",
    "frontmatter",
    "install",
    "json_entry",
    "markdown_section",
    "owned",
    "server_command",
    "toml_entry",
]
