"""The loader (`loopengt.plugins`) on fake distributions: a ``*.dist-info`` folder with an
``entry_points.txt`` and a module beside it, on sys.path. Each reason a plugin or one of its
entries is skipped, `find`'s errors, and `load_verifier` on top of it."""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from loopengt import __version__, plugins
from loopengt.errors import UserInputError
from loopengt.graph.gates import load_verifier, run_verifier
from loopengt.plugins import PluginManifest

FakePlugin = Callable[..., None]
MANIFEST = "{'name': 'x', 'version': '1.0', 'capabilities': %r, 'loopengt': %r}"


@pytest.fixture
def fake_plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakePlugin]:
    """``fake_plugin(dist, entry_points, module_source)``: a distribution ``dist`` whose
    module is ``dist`` with `-` as `_` (its modules are forgotten after the test)."""
    site = tmp_path / "site"
    site.mkdir()
    monkeypatch.syspath_prepend(str(site))
    modules: list[str] = []

    def make(dist: str, entry_points: str, module: str = "") -> None:
        name = dist.replace("-", "_")
        info = site / f"{name}-1.0.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.0\n")
        (info / "entry_points.txt").write_text(textwrap.dedent(entry_points))
        (site / f"{name}.py").write_text(textwrap.dedent(module))
        modules.append(name)

    yield make
    for name in modules:
        sys.modules.pop(name, None)


def manifest(capabilities: list[str], loopengt: str = "") -> str:
    return "manifest = " + MANIFEST % (capabilities, loopengt) + "\n"


def verifier_plugin(fake_plugin: FakePlugin, dist: str, manifest_source: str) -> None:
    """A plugin with a manifest (``manifest_source`` defines `manifest`) and verifier `v`."""
    mod = dist.replace("-", "_")
    fake_plugin(
        dist,
        f"[loopengt.plugins]\nm = {mod}:manifest\n[loopengt.verifiers]\n{mod} = {mod}:check\n",
        manifest_source + "def check(output, step):\n    return 'ok' in str(output)\n",
    )


def problem(capability: plugins.Capability, name: str) -> str | None:
    (entry,) = [e for e in plugins.load(capability) if e.name == name]
    return entry.problem


def test_the_group_of_a_capability() -> None:
    assert [plugins.group(c) for c in plugins.CAPABILITIES] == [
        "loopengt.adapters",
        "loopengt.mcp_tools",
        "loopengt.templates",
        "loopengt.skills",
        "loopengt.verifiers",
    ]


def test_a_good_plugin_loads_its_entries(fake_plugin: FakePlugin) -> None:
    verifier_plugin(fake_plugin, "good", manifest(["verifiers"], ">=0.1,<0.2"))
    (entry,) = plugins.load("verifiers")
    assert (entry.capability, entry.name, entry.plugin, entry.problem) == (
        "verifiers",
        "good",
        "good",
        None,
    )
    assert entry.value("it is ok", step="s") is True
    assert [e.name for e in plugins.usable("verifiers")] == ["good"]
    assert plugins.find("verifiers", "good") is entry.value
    (listed,) = plugins.plugins()
    assert listed.distribution == "good" and listed.problem is None
    assert listed.manifest == PluginManifest(
        name="x", version="1.0", capabilities=["verifiers"], loopengt=">=0.1,<0.2"
    )
    assert [e.name for e in listed.entries] == ["good"]


def test_a_manifest_object_and_an_empty_specifier_are_accepted(fake_plugin: FakePlugin) -> None:
    source = (
        "from loopengt.plugins import PluginManifest\n"
        "manifest = PluginManifest(name='o', version='2', capabilities=['verifiers'])\n"
    )
    verifier_plugin(fake_plugin, "object-manifest", source)
    assert problem("verifiers", "object_manifest") is None
    (listed,) = plugins.plugins()
    assert listed.manifest is not None and listed.manifest.loopengt == ""


def test_no_manifest(fake_plugin: FakePlugin) -> None:
    fake_plugin("bare", "[loopengt.verifiers]\nbare = bare:check\n", "raise RuntimeError('no')\n")
    assert problem("verifiers", "bare") == "no manifest (a 'loopengt.plugins' entry point)"
    (listed,) = plugins.plugins()
    assert listed.manifest is None
    assert listed.problem == "no manifest (a 'loopengt.plugins' entry point)"
    assert "bare" not in sys.modules  # a plugin without a manifest is never imported


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        (
            manifest(["teleport"]),
            "invalid manifest: capabilities.0: Input should be 'adapters', 'mcp_tools', "
            "'templates', 'skills' or 'verifiers'",
        ),
        (
            "manifest = {'name': 'x', 'capabilities': ['verifiers']}\n",
            "invalid manifest: version: Field required",
        ),
        (
            "manifest = {'name': 'x', 'version': 1, 'capabilities': ['verifiers']}\n",
            "invalid manifest: version: Input should be a valid string",
        ),
        (
            "manifest = 'acme'\n",
            "invalid manifest: Input should be a valid dictionary or instance of PluginManifest",
        ),
    ],
    ids=["bad-capability", "missing-field", "wrong-type", "not-a-mapping"],
)
def test_an_invalid_manifest(fake_plugin: FakePlugin, source: str, expected: str) -> None:
    verifier_plugin(fake_plugin, "bad-manifest", source)
    assert problem("verifiers", "bad_manifest") == expected
    (listed,) = plugins.plugins()
    assert listed.manifest is None and listed.problem == expected


def test_a_manifest_that_raises_on_import(fake_plugin: FakePlugin) -> None:
    fake_plugin(
        "exploding",
        "[loopengt.plugins]\nm = exploding:manifest\n[loopengt.verifiers]\nexploding = ok:f\n",
        "raise ImportError('needs acme-sdk\\nsecond line')\n",
    )
    expected = "manifest failed to load (ImportError: needs acme-sdk)"
    assert problem("verifiers", "exploding") == expected
    assert plugins.plugins()[0].problem == expected


def test_an_invalid_version_specifier(fake_plugin: FakePlugin) -> None:
    verifier_plugin(fake_plugin, "bad-spec", manifest(["verifiers"], "soon"))
    assert problem("verifiers", "bad_spec") == "invalid loopengt version specifier 'soon'"


@pytest.mark.parametrize("supported", ["<0.1", ">=0.2", "==0.0.9"])
def test_an_incompatible_version(fake_plugin: FakePlugin, supported: str) -> None:
    verifier_plugin(fake_plugin, "elderly", manifest(["verifiers"], supported))
    expected = f"supports loopengt {supported}, this is {__version__}"
    assert problem("verifiers", "elderly") == expected
    assert plugins.plugins()[0].problem == expected
    assert list(plugins.usable("verifiers")) == []


@pytest.mark.parametrize("supported", [">=0.1", "~=0.1", "==0.1.*", ">=0.1.0rc1,<1"])
def test_a_compatible_version(fake_plugin: FakePlugin, supported: str) -> None:
    verifier_plugin(fake_plugin, "current", manifest(["verifiers"], supported))
    assert problem("verifiers", "current") is None


def test_a_capability_the_manifest_does_not_declare(fake_plugin: FakePlugin) -> None:
    fake_plugin(
        "partial",
        "[loopengt.plugins]\nm = partial:manifest\n"
        "[loopengt.templates]\nt = partial:folder\n"
        "[loopengt.verifiers]\nv = partial_checks:check\n",
        manifest(["templates"]) + "folder = '.'\n",
    )
    assert problem("verifiers", "v") == "'verifiers' is not among the manifest's capabilities"
    assert problem("templates", "t") is None  # the declared one still loads
    assert "partial_checks" not in sys.modules
    (listed,) = plugins.plugins()
    assert listed.problem is None  # the plugin is fine; one entry is skipped
    assert {e.name: e.problem is None for e in listed.entries} == {"t": True, "v": False}


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("missing_module:check", "failed to load (ModuleNotFoundError: No module named "),
        ("importer:nothing", "failed to load (AttributeError: "),
        ("importer_raises:check", "failed to load (RuntimeError: acme broke)"),
    ],
)
def test_an_entry_that_does_not_import(
    fake_plugin: FakePlugin, tmp_path: Path, target: str, expected: str
) -> None:
    (tmp_path / "site" / "importer_raises.py").write_text("raise RuntimeError('acme broke')\n")
    fake_plugin(
        "importer",
        f"[loopengt.plugins]\nm = importer:manifest\n[loopengt.verifiers]\nv = {target}\n",
        manifest(["verifiers"]),
    )
    found = problem("verifiers", "v")
    assert found is not None and found.startswith(expected)
    with pytest.raises(UserInputError) as raised:
        plugins.find("verifiers", "v")
    assert str(raised.value) == f"loopengt.verifiers plugin 'v': {found}"
    sys.modules.pop("importer_raises", None)


def test_an_entry_that_exits_on_import_is_skipped(fake_plugin: FakePlugin, tmp_path: Path) -> None:
    (tmp_path / "site" / "exits_on_import.py").write_text("import sys\nsys.exit(3)\n")
    fake_plugin(
        "quitter",
        "[loopengt.plugins]\nm = quitter:manifest\n"
        "[loopengt.verifiers]\nv = exits_on_import:check\n",
        manifest(["verifiers"]),
    )
    try:
        found = problem("verifiers", "v")
    except SystemExit as exc:
        pytest.fail(f"the plugin's SystemExit({exc.code}) escaped the loader")
    assert found == "failed to load (SystemExit: 3)"


def test_find_names_the_reason_a_plugin_was_skipped(fake_plugin: FakePlugin) -> None:
    verifier_plugin(fake_plugin, "elderly", manifest(["verifiers"], "<0.1"))
    with pytest.raises(UserInputError) as raised:
        plugins.find("verifiers", "elderly")
    assert str(raised.value) == (
        f"loopengt.verifiers plugin 'elderly': supports loopengt <0.1, this is {__version__}"
    )
    assert raised.value.exit_code == 2


def test_find_of_an_unknown_name(fake_plugin: FakePlugin) -> None:
    verifier_plugin(fake_plugin, "good", manifest(["verifiers"]))
    with pytest.raises(UserInputError) as raised:
        plugins.find("verifiers", "nope")
    assert str(raised.value) == "'nope' not found (no 'loopengt.verifiers' entry point)"
    with pytest.raises(UserInputError, match=r"'good' not found \(no 'loopengt\.skills'"):
        plugins.find("skills", "good")  # names are per capability


def test_find_prefers_a_usable_entry_over_a_broken_one_of_the_same_name(
    fake_plugin: FakePlugin,
) -> None:
    for dist, supported in (("aaa-old", "<0.1"), ("zzz-new", ">=0.1")):
        mod = dist.replace("-", "_")
        fake_plugin(
            dist,
            f"[loopengt.plugins]\nm = {mod}:manifest\n[loopengt.verifiers]\nshared = {mod}:check\n",
            manifest(["verifiers"], supported) + f"def check(output, step):\n    return {mod!r}\n",
        )
    assert sorted(e.plugin for e in plugins.load("verifiers")) == ["aaa-old", "zzz-new"]
    assert plugins.find("verifiers", "shared")("x", step="s") == "zzz_new"


def test_plugins_are_listed_by_distribution_with_all_they_add(fake_plugin: FakePlugin) -> None:
    only = "[loopengt.plugins]\nm = b_only_manifest:manifest\n"
    fake_plugin("b-only-manifest", only, manifest([]))
    fake_plugin(
        "a-two",
        "[loopengt.plugins]\nm = a_two:manifest\n"
        "[loopengt.verifiers]\nv = a_two:check\n[loopengt.skills]\ns = a_two:skills\n",
        manifest(["verifiers", "skills"]) + "check = print\nskills = []\n",
    )
    listed = plugins.plugins()
    assert [p.distribution for p in listed] == ["a-two", "b-only-manifest"]
    assert sorted((e.capability, e.name) for e in listed[0].entries) == [
        ("skills", "s"),
        ("verifiers", "v"),
    ]
    assert listed[1].entries == [] and listed[1].problem is None


# -- load_verifier: the gate's view of the loader --------------------------------------------------


def test_load_verifier_takes_plugin_verifiers_of_every_result_form(
    fake_plugin: FakePlugin,
) -> None:
    fake_plugin(
        "forms",
        "[loopengt.plugins]\nm = forms:manifest\n[loopengt.verifiers]\n"
        "as_bool = forms:as_bool\nas_tuple = forms:as_tuple\nas_dict = forms:as_dict\n"
        "not_callable = forms:number\n",
        manifest(["verifiers"])
        + "number = 42\n"
        + "def as_bool(output, step):\n    return 'TODO' not in output\n"
        + "def as_tuple(output, step):\n    return ('TODO' not in output, f'{step}: TODO')\n"
        + "def as_dict(output, step):\n"
        + "    return {'pass': 'TODO' not in output, 'reason': 'has TODO'}\n",
    )
    verdicts = {
        name: run_verifier(load_verifier(name), "a TODO", "draft")
        for name in ("as_bool", "as_tuple", "as_dict")
    }
    assert {name: (v.passed, v.reason) for name, v in verdicts.items()} == {
        "as_bool": (False, "rejected by verifier"),
        "as_tuple": (False, "draft: TODO"),
        "as_dict": (False, "has TODO"),
    }
    assert run_verifier(load_verifier("as_bool"), "done", "draft").passed
    with pytest.raises(UserInputError, match="verifier 'not_callable' is a int, not a callable"):
        load_verifier("not_callable")
