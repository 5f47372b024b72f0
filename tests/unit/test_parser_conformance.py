"""BuildKit's parser test data (../shared/conformance/buildkit-parser) against pybox's parser.

The data is read in place, never copied: see the README there for the formats.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from support.conformance import CONFORMANCE, require_data
from pybox.builder.goquote import quote
from pybox.builder.parser import (
    ContainerfileError,
    Node,
    chomp_heredoc_content,
    dump,
    dump_node,
    heredocs_from_line,
    parse,
    parse_heredoc,
    parse_json,
    parse_name_val,
    parse_words,
)

DATA = CONFORMANCE / "buildkit-parser"


def _cases(sub: str) -> list[str]:
    folder = DATA / sub
    return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []


def _json(name: str) -> Any:
    return json.loads((DATA / name).read_text(encoding="utf-8"))


def _rows(name: str, *keys: str) -> list[Any]:
    """Rows of a JSON table, or nothing when the data is absent."""
    if not DATA.is_dir():
        return []
    data = _json(name)
    for key in keys:
        data = data[key]
    return list(data)


def _read(path: Path) -> str:
    # Bytes as they are: no newline translation, bad UTF-8 kept as surrogates.
    return path.read_bytes().decode("utf-8", "surrogateescape")


@pytest.fixture(autouse=True)
def _need_data() -> None:
    require_data(DATA)


def test_the_data_is_there() -> None:
    """Without the data the parametrized tests below have no cases at all; this one says so."""
    require_data(DATA / "testfiles")


@pytest.mark.parametrize("case", _cases("testfiles"))
def test_testfile_dump(case: str) -> None:
    folder = DATA / "testfiles" / case
    result = parse(_read(folder / "Dockerfile"))
    assert dump(result) + "\n" == _read(folder / "result")


@pytest.mark.parametrize("case", _cases("testfiles-negative"))
def test_testfile_negative(case: str) -> None:
    with pytest.raises(ContainerfileError):
        parse(_read(DATA / "testfiles-negative" / case / "Dockerfile"))


def test_line_numbers() -> None:
    spec = _json("parser-extra-cases.json")["line_numbers"]
    expected = spec["expected"]
    result = parse(_read(DATA / spec["file"]))
    assert (result.start_line, result.end_line) == (
        expected["ast_start_line"],
        expected["ast_end_line"],
    )
    assert len(result.nodes) == expected["child_count"]
    spans = [[n.start_line, n.end_line] for n in result.nodes]
    assert spans == expected["children_start_end"]


def test_empty_continuation_warnings() -> None:
    spec = _json("parser-extra-cases.json")["empty_continuation_warnings"]
    expected = spec["expected"]
    result = parse(spec["dockerfile"])
    assert len(result.warnings) == expected["warning_count"]
    for warning, needles in zip(result.warnings, expected["warnings_short_contain"]):
        for needle in needles:
            assert needle in warning
    assert expected["first_warning_detail_contains"] in result.warnings[0]


def test_scanner_error() -> None:
    spec = _json("parser-extra-cases.json")["scanner_error"]
    built = spec["dockerfile_built_from"]
    text = built["prefix"] + built["repeat"] * built["count"] + built["suffix"]
    with pytest.raises(ContainerfileError, match=spec["expected"]["error"]):
        parse(text)


@pytest.mark.parametrize(
    "row", _rows("parser-extra-cases.json", "parse_words", "cases")
)
def test_parse_words(row: dict[str, Any]) -> None:
    assert parse_words(row["input"]) == row["expect"]


@pytest.mark.parametrize(
    "row", _rows("parser-extra-cases.json", "json_arrays", "valid")
)
def test_json_array_valid(row: dict[str, Any]) -> None:
    assert parse_json(row["input"]) == row["expect"]


@pytest.mark.parametrize(
    "row", _rows("parser-extra-cases.json", "json_arrays", "invalid")
)
def test_json_array_invalid(row: dict[str, Any]) -> None:
    with pytest.raises(ContainerfileError) as caught:
        parse_json(row["input"])
    assert caught.value.message == row["error"]


@pytest.mark.parametrize("row", _rows("parser-extra-cases.json", "name_value", "cases"))
def test_name_value(row: dict[str, Any]) -> None:
    if row.get("error"):
        with pytest.raises(ContainerfileError):
            parse_name_val(row["rest"], row["instruction"])
    else:
        assert parse_name_val(row["rest"], row["instruction"]) == row["expect_args"]


def _heredoc_children() -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
    return [
        (case["dockerfile"], case["expected"], child)
        for case in _rows("heredoc-cases.json")
        for child in case["expected"]["children"]
    ]


@pytest.mark.parametrize(
    ("dockerfile", "expected", "child"),
    _heredoc_children(),
    ids=lambda v: v["original"] if isinstance(v, dict) and "original" in v else "",
)
def test_heredoc_case(
    dockerfile: str, expected: dict[str, Any], child: dict[str, Any]
) -> None:
    assert expected["error"] is False
    result = parse(dockerfile)
    assert len(result.nodes) == len(expected["children"])
    node: Node = result.nodes[child["index"]]
    observed = {
        "original": node.original,
        "keyword": node.value,
        "flags": node.flags,
        "args": node.args,
        "start_line": node.start_line,
        "end_line": node.end_line,
        "result_line": dump_node(node),
    }
    assert observed == {key: child[key] for key in observed}
    if child["heredocs"] is not None:
        docs = [
            {
                "name": d.name,
                "content": d.content,
                "expand": d.expand,
                "chomp": d.chomp,
                "file_descriptor": d.file_descriptor,
            }
            for d in node.heredocs
        ]
        assert docs == child["heredocs"]


@pytest.mark.parametrize(
    "row", _rows("heredoc-helper-cases.json", "ParseHeredoc", "cases")
)
def test_parse_heredoc(row: dict[str, Any]) -> None:
    if row["result"] == "error":
        with pytest.raises(ContainerfileError):
            parse_heredoc(row["word"])
        return
    doc = parse_heredoc(row["word"])
    if row["result"] == "none":
        assert doc is None
        return
    assert doc is not None and doc.name == row["name"]
    seen = row["observed_at_commit"]
    assert (doc.expand, doc.chomp, doc.file_descriptor) == (
        seen["expand"],
        seen["chomp"],
        seen["file_descriptor"],
    )


@pytest.mark.parametrize(
    "row", _rows("heredoc-helper-cases.json", "heredocsFromLine", "cases")
)
def test_heredocs_from_line(row: dict[str, Any]) -> None:
    names = [d.name for d in heredocs_from_line(row["line"])]
    # The README marks one row as not enforced upstream; match what BuildKit does.
    expected = row.get("observed_at_commit", row["heredoc_names"])
    assert names == expected


@pytest.mark.parametrize(
    "row", _rows("heredoc-helper-cases.json", "ChompHeredocContent", "cases")
)
def test_chomp_heredoc_content(row: dict[str, Any]) -> None:
    assert chomp_heredoc_content(row["input"]) == row["output"]


@pytest.mark.parametrize("row", _rows("go-quote-cases.json"))
def test_go_quote(row: dict[str, Any]) -> None:
    if "input_hex" in row:
        text = bytes.fromhex(row["input_hex"]).decode("utf-8", "surrogateescape")
    else:
        text = row["input"]
    assert quote(text) == row["quoted"]
