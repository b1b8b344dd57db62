"""IDE adapters: `loopengt init --ide NAME` writes what each IDE reads to use loopengt."""

from loopengt.ide.adapters import (
    Adapter,
    Installed,
    Target,
    adapters,
    install,
    make_target,
    server_command,
)
from loopengt.ide.files import (
    Change,
    json_entry,
    markdown_section,
    owned,
    read_entry,
    toml_entry,
)
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
    "make_target",
    "markdown_section",
    "owned",
    "read_entry",
    "server_command",
    "toml_entry",
]
