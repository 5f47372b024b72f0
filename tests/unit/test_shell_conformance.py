"""pybox.builder.shell against BuildKit's own shell test data, plus pybox's uses.

``../shared/conformance/buildkit-shell`` (described in its README) holds
BuildKit's ``envVarTest`` and ``wordsTest`` byte for byte and the tables of
``lex_test.go`` as JSON; every row is one test here.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from support.conformance import CONFORMANCE, require_data

from pybox.builder.shell import ExpansionError, Lex
from pybox.errors import UsageError

DATA = CONFORMANCE / "buildkit-shell"

ENV_VAR_TEST_ENV = {"PWD": "/home", "SHELL": "bash", "KOREAN": "한국어", "NULL": ""}


def _need(name: str) -> Path:
    path = DATA / name
    require_data(path)
    return path


def _env_var_rows() -> list[Any]:
    """``PLATFORM|input|expected`` rows; Linux runs the A (all) and U (Unix) ones."""
    path = DATA / "envVarTest"
    if not path.exists():
        return [pytest.param(None, None, id="absent")]
    rows = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if line.startswith("#") or not line.strip():
            continue
        platform, word, expected = (field.strip() for field in line.strip().split("|"))
        if platform in ("A", "U"):
            rows.append(pytest.param(word, expected, id=f"line{number}:{word}"))
    return rows


def _words_rows() -> list[Any]:
    """``input|w1,w2`` rows, each with the environment the ``ENV`` lines above it built."""
    path = DATA / "wordsTest"
    if not path.exists():
        return [pytest.param(None, None, None, id="absent")]
    rows = []
    env: dict[str, str] = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if line.startswith("#"):
            continue
        if line.startswith("ENV "):
            name, _, value = line[len("ENV "):].lstrip(" ").partition("=")
            env[name] = value
            continue
        word, expected = line.split("|")
        word = word.strip()
        rows.append(pytest.param(word, expected.lstrip(" "), dict(env), id=f"line{number}:{word}"))
    return rows


def _cases(table: str) -> list[Any]:
    path = DATA / "process-word-cases.json"
    if not path.exists():
        return [pytest.param(None, id="absent")]
    cases = json.loads(path.read_text(encoding="utf-8"))[table]["cases"]
    return [pytest.param(case, id=f"{index}:{case.get('input', '')}") for index, case in enumerate(cases)]


def _env_list(entries: list[str]) -> dict[str, str]:
    """BuildKit's ``KEY=value`` list: a bare ``KEY`` is empty, the last repeat wins."""
    env: dict[str, str] = {}
    for entry in entries:
        name, _, value = entry.partition("=")
        env[name] = value
    return env


@pytest.mark.parametrize(("word", "expected"), _env_var_rows())
def test_env_var_test(word: str | None, expected: str | None) -> None:
    _need("envVarTest")
    assert word is not None
    if expected == "error":
        with pytest.raises(ExpansionError):
            Lex().process_word(word, ENV_VAR_TEST_ENV)
    else:
        assert Lex().process_word(word, ENV_VAR_TEST_ENV).result == expected


@pytest.mark.parametrize(("word", "expected", "env"), _words_rows())
def test_words_test(word: str | None, expected: str | None, env: dict[str, str] | None) -> None:
    _need("wordsTest")
    assert word is not None and expected is not None and env is not None
    if expected == "error":
        with pytest.raises(ExpansionError):
            Lex().process_words(word, env)
    else:
        assert Lex().process_words(word, env)[0] == expected.split(",")


@pytest.mark.parametrize("case", _cases("TestProcessWithMatches"))
def test_process_with_matches(case: dict[str, Any] | None) -> None:
    _need("process-word-cases.json")
    assert case is not None
    if case["expectedErr"]:
        with pytest.raises(ExpansionError):
            Lex().process_word(case["input"], case["envs"])
        return
    expanded = Lex().process_word(case["input"], case["envs"])
    assert expanded.result == case["expected"]
    assert expanded.used == frozenset(case["matches"])
    assert expanded.unmatched == frozenset(case["unmatched"])


@pytest.mark.parametrize("case", _cases("TestProcessWithMatchesPlatform"))
def test_process_with_matches_platform(case: dict[str, Any] | None) -> None:
    path = _need("process-word-cases.json")
    assert case is not None
    word = json.loads(path.read_text(encoding="utf-8"))["TestProcessWithMatchesPlatform"]["input"]
    assert Lex().process_word(word, case["envs"]).result == case["expected"]


@pytest.mark.parametrize("case", _cases("TestShellParserMandatoryEnvVars"))
def test_mandatory_env_vars(case: dict[str, Any] | None) -> None:
    _need("process-word-cases.json")
    assert case is not None
    env = _env_list(case["envs"])
    if "error_contains" in case:
        with pytest.raises(ExpansionError, match=case["error_contains"]):
            Lex().process_word(case["input"], env)
    else:
        assert Lex().process_word(case["input"], env).result == case["expected"]


@pytest.mark.parametrize("case", _cases("TestGetEnv"))
def test_get_env(case: dict[str, Any] | None) -> None:
    _need("process-word-cases.json")
    assert case is not None
    assert Lex().process_word("${" + case["get"] + "}", _env_list(case["envs"])).result == case["expected"]


# -- pybox's own uses: what the builder relies on ----------------------------


def test_used_names_only_the_referenced_set_ones() -> None:
    expanded = Lex().process_word("$A-${B:-x}-${C}", {"A": "1", "B": "2", "UNUSED": "3"})
    assert expanded.result == "1-2-"
    assert expanded.used == {"A", "B"}
    assert expanded.unmatched == {"C"}


def test_used_includes_names_in_an_operand_not_taken() -> None:
    # BuildKit expands the operand before it looks at the variable, so a
    # name in it counts as used even when the default is not needed.
    expanded = Lex().process_word("${A:-$B}", {"A": "1", "B": "2"})
    assert expanded.result == "1"
    assert expanded.used == {"A", "B"}


def test_quoted_names_are_not_used() -> None:
    assert Lex().process_word("'$A' \\$B", {"A": "1", "B": "2"}).used == frozenset()


def test_process_words_reports_used_names() -> None:
    words, used = Lex().process_words("$A \"$B c\"", {"A": "x y", "B": "z"})
    assert words == ["x", "y", "z c"]
    assert used == {"A", "B"}


def test_backtick_escape() -> None:
    lex = Lex(escape="`")
    assert lex.process_word("C:\\dir`$X", {"X": "no"}).result == "C:\\dir$X"
    assert lex.process_word('"a`"b"', {}).result == 'a"b'


def test_mandatory_message_is_buildkits() -> None:
    with pytest.raises(ExpansionError, match="^v: msg$") as raised:
        Lex().process_word("${v:?msg}", {})
    assert isinstance(raised.value, UsageError)
    with pytest.raises(ExpansionError, match="^v: is not allowed to be empty$"):
        Lex().process_word("${v:?}", {"v": ""})


def test_raw_quotes_and_escapes_keep_them() -> None:
    lex = Lex(raw_quotes=True, raw_escapes=True)
    assert lex.process_word("'$A' \"$A\" \\$A", {"A": "1"}).result == "'$A' \"1\" \\$A"


def test_skip_process_quotes_expands_inside_single_quotes() -> None:
    assert Lex(skip_process_quotes=True).process_word("'$A'", {"A": "1"}).result == "'1'"


def test_skip_unset_env_leaves_the_reference() -> None:
    lex = Lex(skip_unset_env=True)
    assert lex.process_word("$A ${B} ${C:-x}", {}).result == "$A ${B} ${C:-x}"
