"""pybox.builder.context: Containerfile lookup, ignore-file lookup, COPY sources, cache hash."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from support.skip import require_root

from pybox.builder.context import BuildContext, content_hash, find_containerfile, ignore_rules
from pybox.builder.ignore import IgnoreRules
from pybox.errors import UsageError


def _tree(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def _context(root: Path, *rules: str) -> BuildContext:
    return BuildContext(root, IgnoreRules.parse(rules))


# -- find_containerfile ------------------------------------------------------


def test_containerfile_wins_over_dockerfile(tmp_path: Path) -> None:
    _tree(tmp_path, {"Containerfile": "", "Dockerfile": ""})
    assert find_containerfile(tmp_path, None) == tmp_path / "Containerfile"


def test_dockerfile_when_no_containerfile(tmp_path: Path) -> None:
    _tree(tmp_path, {"Dockerfile": ""})
    assert find_containerfile(tmp_path, None) == tmp_path / "Dockerfile"


def test_neither_names_both(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="no Containerfile or Dockerfile in build context"):
        find_containerfile(tmp_path, None)


def test_directory_named_containerfile_is_not_a_file(tmp_path: Path) -> None:
    (tmp_path / "Containerfile").mkdir()
    _tree(tmp_path, {"Dockerfile": ""})
    assert find_containerfile(tmp_path, None) == tmp_path / "Dockerfile"


def test_dash_f_is_relative_to_the_current_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    context = tmp_path / "ctx"
    _tree(tmp_path, {"ctx/Containerfile": "", "build/app.Containerfile": ""})
    monkeypatch.chdir(tmp_path / "build")
    found = find_containerfile(context, "app.Containerfile")
    assert found == tmp_path / "build" / "app.Containerfile"


def test_dash_f_absolute(tmp_path: Path) -> None:
    _tree(tmp_path, {"x/File": ""})
    assert find_containerfile(tmp_path / "ctx", str(tmp_path / "x/File")) == tmp_path / "x/File"


def test_dash_f_missing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UsageError, match="Containerfile not found: nope"):
        find_containerfile(tmp_path, "nope")


def test_dash_f_stdin_is_refused(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="standard input"):
        find_containerfile(tmp_path, "-")


# -- ignore_rules ------------------------------------------------------------

IGNORE_FILES = [
    "app.Containerfile.containerignore",
    "app.Containerfile.dockerignore",
    ".containerignore",
    ".dockerignore",
]


@pytest.mark.parametrize("winner", range(len(IGNORE_FILES)), ids=IGNORE_FILES)
def test_ignore_file_precedence(tmp_path: Path, winner: int) -> None:
    # Every file from the winner on exists; each excludes its own name, so
    # the rules show which one was read.
    _tree(tmp_path, {name: name for name in IGNORE_FILES[winner:]})
    _tree(tmp_path, {"app.Containerfile": ""})
    rules = ignore_rules(tmp_path, tmp_path / "app.Containerfile")
    assert [rule.pattern for rule in rules.rules] == [IGNORE_FILES[winner]]


def test_file_specific_ignore_file_lies_beside_the_containerfile(tmp_path: Path) -> None:
    context = _tree(tmp_path / "ctx", {".dockerignore": "ctx-rule"})
    _tree(tmp_path, {"files/Containerfile": "", "files/Containerfile.dockerignore": "mine"})
    rules = ignore_rules(context, tmp_path / "files" / "Containerfile")
    assert [rule.pattern for rule in rules.rules] == ["mine"]


def test_another_containerfiles_ignore_file_is_not_used(tmp_path: Path) -> None:
    _tree(
        tmp_path,
        {"Containerfile": "", "other.Containerfile.dockerignore": "x", ".dockerignore": "y"},
    )
    rules = ignore_rules(tmp_path, tmp_path / "Containerfile")
    assert [rule.pattern for rule in rules.rules] == ["y"]


def test_no_ignore_file_gives_empty_rules(tmp_path: Path) -> None:
    _tree(tmp_path, {"Containerfile": ""})
    assert ignore_rules(tmp_path, tmp_path / "Containerfile") == IgnoreRules()


# -- BuildContext.select -----------------------------------------------------


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    # A subdirectory: tmp_path also holds the test's HOME (tests/conftest.py).
    return _tree(
        tmp_path / "ctx",
        {
            "Containerfile": "FROM scratch",
            ".dockerignore": "*.log",
            "a.py": "a",
            "b.py": "b",
            "c.txt": "c",
            "debug.log": "log",
            "src/main.py": "main",
            "src/util/helpers.py": "helpers",
            "src/util/notes.txt": "notes",
            "secret/key": "k",
            "secret/public.pem": "p",
        },
    )


def test_literal_file_and_directory(tree: Path) -> None:
    ctx = _context(tree)
    assert ctx.select("a.py") == ["a.py"]
    assert ctx.select("./src/") == ["src"]
    assert ctx.select("/src/util/../main.py") == ["src/main.py"]
    assert ctx.select(".") == ["."]


def test_star_stays_within_one_part(tree: Path) -> None:
    ctx = _context(tree)
    assert ctx.select("*.py") == ["a.py", "b.py"]
    assert ctx.select("src/*.py") == ["src/main.py"]
    assert ctx.select("src/*/*.py") == ["src/util/helpers.py"]
    # "**" is two "*" in COPY, not "any depth" as in .dockerignore.
    assert ctx.select("**/*.py") == ["src/main.py"]


def test_question_mark_and_classes(tree: Path) -> None:
    ctx = _context(tree)
    assert ctx.select("?.py") == ["a.py", "b.py"]
    assert ctx.select("[ac].*") == ["a.py", "c.txt"]
    assert ctx.select("[^a].py") == ["b.py"]
    assert ctx.select("[a-b].py") == ["a.py", "b.py"]


def test_wildcard_matching_a_directory_selects_it_whole(tree: Path) -> None:
    assert _context(tree).select("s*") == ["secret", "src"]


def test_wildcard_matching_nothing_is_empty(tree: Path) -> None:
    ctx = _context(tree)
    assert ctx.select("requirements.tx[t]") == []
    assert ctx.select("missing/*.py") == []


def test_escaped_wildcard_is_literal(tree: Path) -> None:
    _tree(tree, {"star*": "s", "starx": "x"})
    assert _context(tree).select("st?r\\*") == ["star*"]


def test_bad_pattern(tree: Path) -> None:
    with pytest.raises(UsageError, match="syntax error in pattern"):
        _context(tree).select("a[.py")


def test_missing_source_error_text(tree: Path) -> None:
    with pytest.raises(UsageError) as caught:
        _context(tree).select("nope.txt")
    assert str(caught.value) == (
        "COPY failed: file not found in build context or excluded by .dockerignore: "
        "stat nope.txt: no such file"
    )


def test_ignored_files_are_invisible(tree: Path) -> None:
    ctx = _context(tree, "*.log", "secret", "src/util/*.txt")
    assert ctx.select("*") == [
        ".dockerignore", "Containerfile", "a.py", "b.py", "c.txt", "src",
    ]
    for source in ("debug.log", "secret", "secret/key", "src/util/notes.txt"):
        with pytest.raises(UsageError, match="excluded by .dockerignore"):
            ctx.select(source)
    assert list(ctx.walk("src")) == ["src", "src/main.py", "src/util", "src/util/helpers.py"]


def test_containerfile_and_ignore_file_obey_the_rules(tree: Path) -> None:
    ctx = _context(tree, "Containerfile", ".dockerignore")
    assert "Containerfile" not in list(ctx.walk("."))
    with pytest.raises(UsageError):
        ctx.select(".dockerignore")
    assert "Containerfile" in list(_context(tree).walk("."))


def test_reincluded_file_under_excluded_directory(tree: Path) -> None:
    ctx = _context(tree, "secret", "!secret/public.pem")
    assert ctx.select("secret") == ["secret"]
    assert ctx.select("secret/*") == ["secret/public.pem"]
    assert list(ctx.walk("secret")) == ["secret", "secret/public.pem"]
    with pytest.raises(UsageError):
        ctx.select("secret/key")


def test_escaping_the_context_is_refused(tree: Path) -> None:
    ctx = _context(tree)
    for source in ("../x", "..", "src/../../x", "../*"):
        with pytest.raises(UsageError, match="outside the build context"):
            ctx.select(source)


def test_symlinked_parent_leading_out_is_refused(
    tree: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    outside = _tree(tmp_path_factory.mktemp("outside"), {"passwd": "root"})
    (tree / "link").symlink_to(outside)
    with pytest.raises(UsageError, match="file not found"):
        _context(tree).select("link/passwd")
    assert _context(tree).select("link/*") == []


# -- content_hash ------------------------------------------------------------


def _hash(root: Path, *paths: str) -> str:
    return content_hash(_context(root), list(paths))


def test_hash_ignores_times(tree: Path) -> None:
    before = _hash(tree, "src", "a.py")
    os.utime(tree / "a.py", (1_000_000, 1_000_000))
    os.utime(tree / "src/util/helpers.py", (2_000_000, 2_000_000))
    os.utime(tree / "src", (3_000_000, 3_000_000))
    assert _hash(tree, "src", "a.py") == before


def test_hash_ignores_owners(tree: Path) -> None:
    require_root()  # chown
    before = _hash(tree, "src")
    os.chown(tree / "src/main.py", 1234, 5678)
    assert _hash(tree, "src") == before


def test_hash_follows_content(tree: Path) -> None:
    before = _hash(tree, "src")
    (tree / "src/util/helpers.py").write_text("changed")
    assert _hash(tree, "src") != before


def test_hash_follows_mode(tree: Path) -> None:
    before = _hash(tree, "a.py")
    (tree / "a.py").chmod(0o755)
    executable = _hash(tree, "a.py")
    assert executable != before
    (tree / "a.py").chmod(0o4755)
    assert _hash(tree, "a.py") != executable


def test_hash_follows_rename(tree: Path) -> None:
    before = _hash(tree, "src")
    (tree / "src/main.py").rename(tree / "src/app.py")
    assert _hash(tree, "src") != before


def test_hash_follows_a_new_file(tree: Path) -> None:
    before = _hash(tree, "src")
    _tree(tree, {"src/util/new.py": ""})
    assert _hash(tree, "src") != before


def test_hash_follows_symlink_target(tree: Path) -> None:
    (tree / "link").symlink_to("a.py")
    before = _hash(tree, "link")
    (tree / "link").unlink()
    (tree / "link").symlink_to("b.py")
    assert _hash(tree, "link") != before


def test_hash_skips_ignored_files(tree: Path) -> None:
    ctx = _context(tree, "src/util/notes.txt")
    before = content_hash(ctx, ["src"])
    (tree / "src/util/notes.txt").write_text("changed")
    assert content_hash(ctx, ["src"]) == before


def test_hash_does_not_run_files_together(tmp_path: Path) -> None:
    # "ab" + "" and "a" + "b" must not hash alike.
    one = _tree(tmp_path / "one", {"x": "ab", "y": ""})
    two = _tree(tmp_path / "two", {"x": "a", "y": "b"})
    assert _hash(one, "x", "y") != _hash(two, "x", "y")
