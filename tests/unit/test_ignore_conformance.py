"""pybox.builder.ignore against docker-py's ``.dockerignore`` cases, plus pybox's uses.

``../shared/conformance/dockerignore/cases.json`` (described in its README)
restates docker-py's ``ExcludePathsTest`` and ``TarTest.test_tar_with_excludes``:
each case builds a tree, applies the patterns and checks the paths sent.
"""

from __future__ import annotations

import json
import tarfile
from pathlib import Path
from typing import Any

import pytest
from support.conformance import CONFORMANCE, require_data

from pybox.builder.ignore import IgnorePatternError, IgnoreRules, walk
from pybox.errors import UsageError

DATA = CONFORMANCE / "dockerignore"


def _cases() -> list[Any]:
    path = DATA / "cases.json"
    if not path.exists():
        return [pytest.param(None, None, id="absent")]
    data = json.loads(path.read_text(encoding="utf-8"))
    # Rows with backslash-separated patterns apply to Windows only (docker-py
    # skips them on Linux too); pybox runs on Linux, so they are not cases here.
    return [
        pytest.param(case, data["trees"][case["tree"]], id=f"{index}:{case['test']}")
        for index, case in enumerate(data["cases"])
        if case.get("platform") != "windows_only"
    ]


def _make_tree(root: Path, tree: dict[str, list[str]]) -> None:
    for directory in tree["dirs"]:
        (root / directory).mkdir(parents=True)
    for file in tree["files"]:
        (root / file).write_text("content")


def _tar_names(root: Path, paths: list[str], tmp_path: Path) -> list[str]:
    """Pack the walked paths as a build context tar would (no recursion: walk chose)."""
    archive = tmp_path / "context.tar"
    with tarfile.open(archive, "w") as tar:
        for path in paths:
            tar.add(root / path, arcname=path, recursive=False)
    with tarfile.open(archive) as tar:
        return tar.getnames()


@pytest.mark.parametrize(("case", "tree"), _cases())
def test_docker_py_case(
    case: dict[str, Any] | None, tree: dict[str, list[str]] | None, tmp_path: Path
) -> None:
    if case is None or tree is None:
        require_data(DATA / "cases.json")
    root = tmp_path / "context"
    root.mkdir()
    _make_tree(root, tree)
    rules = IgnoreRules.parse(case["patterns"])
    included = walk(root, rules, always_include=(case["dockerfile"] or "Dockerfile", ".dockerignore"))
    match case["assert"]:
        case "included_equals":
            assert set(included) == set(case["expected_included"])
        case "membership":
            assert set(case["must_include"]) <= set(included)
            assert not set(case["must_exclude"]) & set(included)
        case "no_duplicates":
            assert len(included) == len(set(included))
        case "tar_names_equal":
            assert sorted(_tar_names(root, included, tmp_path)) == sorted(case["expected_included"])
        case other:
            pytest.fail(f"unknown assert kind {other!r}")


# -- pybox's own uses ---------------------------------------------------------


def test_comments_blank_lines_and_bom_are_skipped() -> None:
    rules = IgnoreRules.parse(["\ufeff# a comment", "", "   ", "*.log", " # not a comment"])
    assert [rule.pattern for rule in rules.rules] == ["*.log", "# not a comment"]


@pytest.mark.parametrize(
    ("line", "pattern"),
    [
        ("/foo/a.py", "foo/a.py"),
        ("./a.py", "a.py"),
        ("a/whoops/../b", "a/b"),
        ("../a.py", "a.py"),
        ("dir/", "dir"),
    ],
)
def test_patterns_are_cleaned(line: str, pattern: str) -> None:
    assert IgnoreRules.parse([line]).rules[0].pattern == pattern


def test_last_matching_line_wins() -> None:
    rules = IgnoreRules.parse(["*.md", "!README*.md", "README-secret.md"])
    assert rules.matches("notes.md")
    assert not rules.matches("README.md")
    assert rules.matches("README-secret.md")


def test_excluded_directory_excludes_its_content() -> None:
    rules = IgnoreRules.parse(["build", "!build/keep"])
    assert rules.matches("build/x/y.o")
    assert not rules.matches("build/keep/z")


def test_double_star_spans_directories() -> None:
    rules = IgnoreRules.parse(["**/*.pyc", "docs/**"])
    assert rules.matches("a.pyc") and rules.matches("a/b/c.pyc")
    assert rules.matches("docs/x/y") and not rules.matches("docs")


def test_character_class_and_escape() -> None:
    rules = IgnoreRules.parse(["file[0-9].txt", "x[!a]", "star\\*"])
    assert rules.matches("file3.txt") and not rules.matches("filea.txt")
    assert rules.matches("xb") and not rules.matches("xa")
    assert rules.matches("star*") and not rules.matches("stars")


def test_unclosed_class_is_a_usage_error() -> None:
    with pytest.raises(IgnorePatternError) as raised:
        IgnoreRules.parse(["a[b"])
    assert isinstance(raised.value, UsageError)


def test_walk_lists_symlinks_without_following(tmp_path: Path) -> None:
    root = tmp_path / "context"
    (root / "real").mkdir(parents=True)
    (root / "real" / "f").write_text("x")
    (root / "link").symlink_to("real")
    assert walk(root, IgnoreRules.parse([])) == ["link", "real", "real/f"]
