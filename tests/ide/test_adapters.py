"""`loopengt.ide.install`: each IDE's files merged into what the user already has, written
once, refused whole when one does not parse, and a config an IDE reads that really starts
the MCP server."""

from __future__ import annotations

import json
import shutil
import stat
import tomllib
from pathlib import Path
from typing import Any

import pytest

from loopengt.errors import UserInputError
from loopengt.ide import install, read_entry, server_command
from loopengt.ide.files import BEGIN, END
from tests.ide.layout import (
    COMMAND,
    IDES,
    OTHER_SERVER,
    SKILLS,
    Layout,
    corrupt_config,
    expected_entry,
    files_under,
    layout,
    parse_config,
    seed_config,
    split_frontmatter,
    tree,
)

REPO = Path(__file__).resolve().parents[2]
BOTH = pytest.mark.parametrize("global_", [False, True], ids=["project", "global"])
EACH = pytest.mark.parametrize("ide", IDES)


def do_install(names: list[str], root: Path, home: Path, global_: bool = False) -> Any:
    return install(names, root, global_=global_, home=home, command=COMMAND)


def check_entry(ide: str, lay: Layout, data: dict[str, Any], root: Path, global_: bool) -> None:
    entry = dict(data[lay.keys[0]][lay.keys[1]])
    if ide == "codex":
        for key in ("startup_timeout_sec", "tool_timeout_sec"):
            value = entry.pop(key)
            assert isinstance(value, int) and value > 0, (key, value)
    assert entry == expected_entry(ide, root, global_)


# -- merging into the user's config ----------------------------------------------------------


@EACH
@BOTH
def test_merge_keeps_the_other_server_and_every_other_key(
    ide: str, global_: bool, root: Path, home: Path
) -> None:
    lay = layout(ide, root, home, global_)
    before = seed_config(lay)

    [done] = do_install([ide], root, home, global_)

    assert done.adapter.name == ide
    actions = {change.path: change.action for change in done.changes}
    assert actions[lay.config] == "updated"
    data = parse_config(lay)
    top = lay.keys[0]
    assert data[top]["other"] == before[top]["other"]
    assert set(data[top]) == {"other", "loopengt"}
    assert {k: v for k, v in data.items() if k != top} == {
        k: v for k, v in before.items() if k != top
    }
    check_entry(ide, lay, data, root, global_)
    # the wrong top key is never used (VS Code reads `servers`, the others `mcpServers`)
    assert not ({"servers", "mcpServers", "mcp_servers"} - {top}) & set(data)
    if ide == "codex":
        text = lay.config.read_text(encoding="utf-8")
        assert text.startswith("# my codex settings: keep this comment\n")
        assert '"on-request"  # an inline comment' in text
        assert "[mcp_servers.other]" in text
        assert "[mcp_servers.loopengt]" in text
    # what `loopengt doctor` reads back is the entry written
    assert read_entry(lay.config, lay.keys) == data[top]["loopengt"]


@EACH
@BOTH
def test_a_fresh_install_writes_exactly_the_expected_files(
    ide: str, global_: bool, root: Path, home: Path
) -> None:
    lay = layout(ide, root, home, global_)

    [done] = do_install([ide], root, home, global_)

    assert files_under(root, home) == lay.files
    assert {change.path for change in done.changes} == lay.files
    assert {change.action for change in done.changes} == {"created"}
    assert done.next_steps.strip()
    check_entry(ide, lay, parse_config(lay), root, global_)
    if global_:
        # a user-level install leaves the project alone
        assert list(root.iterdir()) == []
    else:
        assert list(home.iterdir()) == []


@EACH
@BOTH
def test_a_second_install_changes_no_byte_and_no_mtime(
    ide: str, global_: bool, root: Path, home: Path
) -> None:
    seed_config(layout(ide, root, home, global_))
    do_install([ide], root, home, global_)
    before = tree(root.parent)

    [again] = do_install([ide], root, home, global_)

    assert {change.action for change in again.changes} == {"unchanged"}
    assert tree(root.parent) == before


@EACH
def test_a_stale_entry_is_replaced_and_the_rest_kept(ide: str, root: Path, home: Path) -> None:
    lay = layout(ide, root, home)
    seed_config(lay)
    if lay.fmt == "toml":
        with lay.config.open("a", encoding="utf-8") as fh:
            fh.write('\n[mcp_servers.loopengt]\ncommand = "old-loopengt"\nargs = ["serve"]\n')
    else:
        data = json.loads(lay.config.read_text(encoding="utf-8"))
        data[lay.keys[0]]["loopengt"] = {"command": "old-loopengt", "args": ["serve"]}
        lay.config.write_text(json.dumps(data), encoding="utf-8")

    [done] = do_install([ide], root, home)

    assert {c.path: c.action for c in done.changes}[lay.config] == "updated"
    data = parse_config(lay)
    assert data[lay.keys[0]]["other"]["command"] == OTHER_SERVER["command"]
    check_entry(ide, lay, data, root, False)


@EACH
def test_an_entry_already_right_leaves_the_file_as_the_user_styled_it(
    ide: str, root: Path, home: Path
) -> None:
    lay = layout(ide, root, home)
    do_install([ide], root, home)
    data = parse_config(lay)
    if lay.fmt == "toml":
        restyled = "# mine\n" + lay.config.read_text(encoding="utf-8").replace(" = ", "=")
    else:
        restyled = json.dumps(data, separators=(",", ":"))  # one compact line
    lay.config.write_text(restyled, encoding="utf-8")

    [done] = do_install([ide], root, home)

    assert {c.path: c.action for c in done.changes}[lay.config] == "unchanged"
    assert lay.config.read_text(encoding="utf-8") == restyled


def test_an_updated_config_keeps_its_permissions(root: Path, home: Path) -> None:
    lay = layout("claude-code", root, home, global_=True)
    seed_config(lay)
    # not the 0o600 a new temporary file gets, nor the usual 0o644
    lay.config.chmod(0o640)

    do_install(["claude-code"], root, home, global_=True)

    assert stat.S_IMODE(lay.config.stat().st_mode) == 0o640
    assert "loopengt" in parse_config(lay)["mcpServers"]


def test_empty_config_files_are_filled(root: Path, home: Path) -> None:
    for ide in IDES:
        lay = layout(ide, root, home)
        lay.config.parent.mkdir(parents=True, exist_ok=True)
        lay.config.write_text("\n  \n", encoding="utf-8")

    done = do_install(list(IDES), root, home)

    for item in done:
        lay = layout(item.adapter.name, root, home)
        assert {c.path: c.action for c in item.changes}[lay.config] == "updated"
        check_entry(item.adapter.name, lay, parse_config(lay), root, False)


def test_all_five_together_and_a_repeated_name_once(root: Path, home: Path) -> None:
    done = do_install([*IDES, "cursor"], root, home)

    assert [item.adapter.name for item in done] == list(IDES)
    written = files_under(root, home)
    # Codex and Antigravity share .agents/ but not a file
    assert written == set().union(*(layout(ide, root, home).files for ide in IDES))
    assert sum(len(item.changes) for item in done) == len(written)


# -- refusing what does not parse --------------------------------------------------------------


@EACH
@BOTH
def test_a_corrupt_config_refuses_the_install_and_writes_nothing(
    ide: str, global_: bool, root: Path, home: Path
) -> None:
    lay = layout(ide, root, home, global_)
    raw = corrupt_config(lay)
    before = tree(root.parent)

    with pytest.raises(UserInputError) as caught:
        do_install([ide], root, home, global_)

    message = str(caught.value)
    assert message.splitlines() == [message]  # one refused file, one line
    assert message.startswith(f"{lay.config}: ")
    assert f"not valid {lay.fmt.upper()}" in message
    assert "left untouched" in message
    assert lay.config.read_bytes() == raw
    assert tree(root.parent) == before


def test_one_corrupt_file_stops_every_ide(root: Path, home: Path) -> None:
    raw = corrupt_config(layout("codex", root, home))
    vscode = layout("vscode", root, home)
    vscode.config.parent.mkdir()
    vscode.config.write_text("[1, 2]", encoding="utf-8")  # JSON, but not an object
    before = tree(root.parent)

    with pytest.raises(UserInputError) as caught:
        do_install(list(IDES), root, home)

    lines = str(caught.value).splitlines()
    assert len(lines) == 2, lines
    assert any(line.startswith(f"{layout('codex', root, home).config}: ") for line in lines)
    assert any(line.startswith(f"{vscode.config}: ") and "not an object" in line for line in lines)
    assert layout("codex", root, home).config.read_bytes() == raw
    assert tree(root.parent) == before


@pytest.mark.parametrize(
    ("ide", "content", "reason"),
    [
        ("cursor", b'{"mcpServers": ["not", "an", "object"]}', "'mcpServers' is a list"),
        ("vscode", b'{"servers": "x"}', "'servers' is a str"),
        ("claude-code", b'{"mcpServers": {}} \xff\xfe', "not UTF-8"),
        ("codex", b"mcp_servers = 3\n", "'mcp_servers' is not a table"),
        ("codex", b'[[mcp_servers]]\nname = "x"\n', "'mcp_servers' is not a table"),
        ("antigravity", b"null", "not an object"),
    ],
)
def test_configs_that_parse_but_cannot_hold_the_entry_are_refused(
    ide: str, content: bytes, reason: str, root: Path, home: Path
) -> None:
    lay = layout(ide, root, home)
    lay.config.parent.mkdir(parents=True, exist_ok=True)
    lay.config.write_bytes(content)
    before = tree(root.parent)

    with pytest.raises(UserInputError, match=reason) as caught:
        do_install([ide], root, home)

    assert str(caught.value).startswith(f"{lay.config}: ")
    assert tree(root.parent) == before


def test_an_unreadable_config_or_skill_file_is_refused(root: Path, home: Path) -> None:
    config = layout("cursor", root, home).config
    config.mkdir(parents=True)  # a folder where the file should be: it cannot be read
    skill = root / ".claude" / "skills" / "loopengt-run" / "SKILL.md"
    skill.parent.mkdir(parents=True)
    skill.write_bytes(b"\xff\xfe not text")
    before = tree(root.parent)

    with pytest.raises(UserInputError) as caught:
        do_install(["cursor", "claude-code"], root, home)

    lines = str(caught.value).splitlines()
    assert [line.split(": ")[0] for line in lines] == [str(config), str(skill)]
    assert "not UTF-8" in lines[1]
    assert tree(root.parent) == before


def test_an_unknown_ide_names_the_known_ones_and_writes_nothing(root: Path, home: Path) -> None:
    with pytest.raises(UserInputError) as caught:
        do_install(["cursor", "emacs"], root, home)

    message = str(caught.value)
    assert "'emacs'" in message
    for ide in IDES:
        assert ide in message
    assert tree(root.parent) == {root: None, home: None}


def test_codex_config_with_an_inline_mcp_servers_table_is_merged_or_refused(
    root: Path, home: Path
) -> None:
    lay = layout("codex", root, home)
    lay.config.parent.mkdir()
    raw = b'model = "o3"\nmcp_servers = { other = { command = "other-server" } }\n'
    lay.config.write_bytes(raw)

    try:
        do_install(["codex"], root, home)
    except UserInputError as exc:  # a refusal is fine: it names the file, which is kept
        assert str(exc).startswith(f"{lay.config}: ")
        assert lay.config.read_bytes() == raw
        return
    data = parse_config(lay)
    assert data["model"] == "o3"
    assert data["mcp_servers"]["other"] == {"command": "other-server"}
    check_entry("codex", lay, data, root, False)


def test_codex_config_with_dotted_mcp_servers_keys_keeps_the_root_keys(
    root: Path, home: Path
) -> None:
    lay = layout("codex", root, home)
    lay.config.parent.mkdir()
    lay.config.write_text('mcp_servers.other.command = "other-server"\nmodel = "o3"\n')

    do_install(["codex"], root, home)

    data = parse_config(lay)
    assert data.get("model") == "o3", data
    assert data["mcp_servers"]["other"] == {"command": "other-server"}
    check_entry("codex", lay, data, root, False)


# -- AGENTS.md: a section of a file the user owns ----------------------------------------------

USER_BEFORE = "# My project\n\nBuild with `make`. Never push to main.\n\n"
USER_AFTER = "\n## Style\n\nTabs, not spaces.\n"


def agents_section(text: str) -> str:
    start = text.index("<!-- loopengt:begin")
    end = text.index(END, start) + len(END)
    return text[start:end]


def test_agents_md_section_is_replaced_and_the_user_text_around_it_kept(
    root: Path, home: Path
) -> None:
    agents = root / "AGENTS.md"
    stale = f"{BEGIN}\nOLD LOOPENGT TEXT\n{END}\n"
    agents.write_text(USER_BEFORE + stale + USER_AFTER, encoding="utf-8")

    [done] = do_install(["codex"], root, home)

    assert {c.path: c.action for c in done.changes}[agents] == "updated"
    text = agents.read_text(encoding="utf-8")
    assert text.startswith(USER_BEFORE + BEGIN + "\n")
    assert text.endswith(END + "\n" + USER_AFTER)
    assert "OLD LOOPENGT TEXT" not in text
    assert text.count("<!-- loopengt:begin") == 1 and text.count(END) == 1
    section = agents_section(text)
    for name in SKILLS:
        assert f"`{name}`" in section
    assert "loopengt mcp serve" in section

    snapshot = tree(root.parent)
    [again] = do_install(["codex"], root, home)
    assert {c.path: c.action for c in again.changes}[agents] == "unchanged"
    assert tree(root.parent) == snapshot


def test_agents_md_without_a_section_gets_one_appended(root: Path, home: Path) -> None:
    agents = root / "AGENTS.md"
    agents.write_text(USER_BEFORE.rstrip("\n"), encoding="utf-8")  # no final newline

    do_install(["codex"], root, home)

    text = agents.read_text(encoding="utf-8")
    assert text.startswith(USER_BEFORE)  # a blank line between the user's text and ours
    assert text.endswith(END + "\n")
    assert text[len(USER_BEFORE) :] == agents_section(text) + "\n"


def test_agents_md_section_of_an_older_loopengt_is_replaced_not_duplicated(
    root: Path, home: Path
) -> None:
    agents = root / "AGENTS.md"
    agents.write_text(
        USER_BEFORE + "<!-- loopengt:begin -->\nold\n" + END + "\n" + USER_AFTER, encoding="utf-8"
    )

    do_install(["codex"], root, home)

    text = agents.read_text(encoding="utf-8")
    assert text.count("<!-- loopengt:begin") == 1
    assert text.startswith(USER_BEFORE + BEGIN) and text.endswith(USER_AFTER)
    assert "\nold\n" not in text


def test_agents_md_with_a_begin_marker_and_no_end_is_refused(root: Path, home: Path) -> None:
    agents = root / "AGENTS.md"
    agents.write_text(USER_BEFORE + BEGIN + "\nhalf a section\n" + USER_AFTER, encoding="utf-8")
    before = tree(root.parent)

    with pytest.raises(UserInputError) as caught:
        do_install(["codex"], root, home)

    message = str(caught.value)
    assert message.startswith(f"{agents}: ")
    assert "begin marker without" in message and END in message
    assert tree(root.parent) == before


# -- the generated Markdown: frontmatter and skill names ---------------------------------------


@EACH
@BOTH
def test_every_generated_markdown_file_has_parsable_frontmatter(
    ide: str, global_: bool, root: Path, home: Path
) -> None:
    lay = layout(ide, root, home, global_)
    do_install([ide], root, home, global_)

    for path, keys in lay.docs.items():
        text = path.read_text(encoding="utf-8")
        if keys is None:
            assert not text.startswith("---"), path
            continue
        data, body = split_frontmatter(text)
        assert keys <= set(data), (path, data)
        for key, value in data.items():
            if key == "alwaysApply":
                assert value is False, (path, value)  # a YAML bool, not the string "false"
            else:
                assert isinstance(value, str) and value.strip(), (path, key, value)
                assert "\n" not in value, (path, key)
        if "name" in data:  # a skill's name is its folder's name
            assert data["name"] == path.parent.name, path
        assert body.strip(), path


@EACH
@BOTH
def test_each_ide_gets_the_five_loop_commands_by_name(
    ide: str, global_: bool, root: Path, home: Path
) -> None:
    lay = layout(ide, root, home, global_)
    do_install([ide], root, home, global_)

    commands: dict[str, str] = {}
    for path in lay.docs:
        if path.name == "SKILL.md":
            commands[path.parent.name] = path.read_text(encoding="utf-8")
        elif path.name.startswith("loopengt-"):
            commands[path.name.split(".")[0]] = path.read_text(encoding="utf-8")
    assert sorted(commands) == sorted(SKILLS)
    for tool, name in (
        ("design_loop", "loopengt-design"),
        ("validate_loop", "loopengt-validate"),
        ("run_loop", "loopengt-run"),
        ("get_trace", "loopengt-trace"),
        ("eval_run", "loopengt-eval"),
    ):
        assert f"`{tool}`" in commands[name], name


def test_cursor_rule_lists_the_commands_and_applies_to_yaml(root: Path, home: Path) -> None:
    do_install(["cursor"], root, home)

    data, body = split_frontmatter(
        (root / ".cursor" / "rules" / "loopengt.mdc").read_text(encoding="utf-8")
    )
    assert data["alwaysApply"] is False
    assert "*.yaml" in data["globs"]
    for name in SKILLS:
        assert f"`{name}`" in body


# -- the config an IDE reads starts a working server -------------------------------------------


def test_the_claude_code_config_starts_a_real_mcp_server_for_the_project(
    root: Path, home: Path, tmp_path: Path
) -> None:
    from mcp import ClientSession, StdioServerParameters
    from mcp.client.stdio import stdio_client

    from tests.mcp_server.client import TOOLS, run
    from tests.runs.helpers import cli_env

    shutil.copy(REPO / "examples" / "research-brief.yaml", root / "brief.yaml")
    install(["claude-code"], root, home=home, command=server_command())
    entry = json.loads((root / ".mcp.json").read_text(encoding="utf-8"))["mcpServers"]["loopengt"]
    assert entry["type"] == "stdio"
    # an IDE may start the server in any folder: the entry itself must name the project
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    params = StdioServerParameters(
        command=entry["command"],
        args=entry["args"],
        env={**cli_env(), "HOME": str(home)},
        cwd=str(elsewhere),
    )

    async def flow() -> tuple[set[str], dict[str, Any]]:
        with (tmp_path / "server.log").open("a", encoding="utf-8") as errlog:
            async with (
                stdio_client(params, errlog=errlog) as (read, write),
                ClientSession(read, write) as session,
            ):
                await session.initialize()
                tools = {tool.name for tool in (await session.list_tools()).tools}
                result = await session.call_tool("validate_loop", {"path": "brief.yaml"})
                assert not result.isError, result.content
                assert isinstance(result.structuredContent, dict)
                return tools, result.structuredContent

    tools, validated = run(flow(), timeout=90)

    assert {"run_loop", "design_loop"} <= tools
    assert tools >= TOOLS
    assert validated["ok"] is True and validated["name"] == "research-brief", validated


def test_codex_config_round_trips_through_tomllib_with_the_real_command(
    root: Path, home: Path
) -> None:
    exe, args = server_command()
    install(["codex"], root, home=home, command=(exe, args))

    data = tomllib.loads((root / ".codex" / "config.toml").read_text(encoding="utf-8"))
    entry = data["mcp_servers"]["loopengt"]
    assert entry["command"] == exe
    assert entry["args"] == [*args, "--root", str(root)]
    assert shutil.which(exe) or Path(exe).is_file(), exe


@EACH
def test_read_entry_reads_back_each_config_and_reports_a_broken_one(
    ide: str, root: Path, home: Path
) -> None:
    lay = layout(ide, root, home)
    assert read_entry(lay.config, lay.keys) is None  # no file yet
    do_install([ide], root, home)
    assert read_entry(lay.config, lay.keys) == parse_config(lay)[lay.keys[0]]["loopengt"]
    assert read_entry(lay.config, (lay.keys[0], "absent")) is None

    corrupt_config(lay)
    with pytest.raises(ValueError, match=f"not valid {lay.fmt.upper()}"):
        read_entry(lay.config, lay.keys)
