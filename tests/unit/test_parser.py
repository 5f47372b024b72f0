"""The Containerfile parser on its own (no conformance data needed)."""

from __future__ import annotations

import pytest
from pybox.builder.goquote import quote
from pybox.builder.parser import (
    ContainerfileError,
    Heredoc,
    chomp_heredoc_content,
    dump,
    extract_builder_flags,
    heredocs_from_line,
    parse,
    parse_heredoc,
    parse_json,
    parse_name_val,
    parse_words,
    split_command,
)

from pybox.errors import UsageError


def _dump(text: str) -> str:
    return dump(parse(text))


def test_keywords_lower_case_and_lines() -> None:
    result = parse("\n# a comment\nfrom alpine AS base\n\nRun echo hi\n")
    assert [n.value for n in result.nodes] == ["from", "run"]
    assert [(n.start_line, n.end_line) for n in result.nodes] == [(3, 3), (5, 5)]
    assert result.nodes[1].original == "Run echo hi"


def test_continuation_skips_comments_and_blank_lines() -> None:
    text = "FROM a\nRUN echo one \\\n  # inside\n\n  two \\\n  three\nCMD x\n"
    result = parse(text)
    assert _dump(text) == '(from "a")\n(run "echo one   two   three")\n(cmd "x")'
    assert (result.nodes[1].start_line, result.nodes[1].end_line) == (2, 6)
    assert len(result.warnings) == 1
    assert "Empty continuation line" in result.warnings[0]


def test_continuation_at_end_of_file() -> None:
    assert _dump("FROM a\nRUN x \\") == '(from "a")\n(run "x")'


def test_escaped_escape_does_not_continue() -> None:
    assert _dump("FROM a\nENV C c:\\\\\nENV D d\n") == (
        '(from "a")\n(env "C" "c:\\\\\\\\" "")\n(env "D" "d" "")'
    )


def test_escape_directive_backtick() -> None:
    result = parse("# escape=`\nFROM a\nRUN dir c:\\ `\n  && echo\n")
    assert result.escape == "`"
    assert result.directives == {"escape": "`"}
    assert dump(result) == '(from "a")\n(run "dir c:\\\\   && echo")'


def test_directives_only_at_the_top() -> None:
    result = parse(
        "# Syntax=docker/dockerfile:1\n# CHECK=skip=all\n\n# escape=`\nFROM a\n"
    )
    assert result.directives == {"syntax": "docker/dockerfile:1", "check": "skip=all"}
    assert result.escape == "\\"


def test_bad_escape_directive() -> None:
    with pytest.raises(ContainerfileError, match="invalid escape token"):
        parse("# escape=x\nFROM a\n")


def test_json_vs_shell_form() -> None:
    result = parse(
        'FROM a\nCMD ["a", "b c"]\nCMD a b\nENTRYPOINT [not json\nCOPY ["x y", "/z"]\n'
    )
    cmd, shell, broken, copy = result.nodes[1:]
    assert (cmd.args, cmd.json) == (["a", "b c"], True)
    assert (shell.args, shell.json) == (["a b"], False)
    assert (broken.args, broken.json) == (["[not json"], False)
    assert (copy.args, copy.json) == (["x y", "/z"], True)


def test_json_rules() -> None:
    assert parse_json(' ["\\u0000"] ') == ["\x00"]
    assert parse_json("[NaN]") is None
    assert parse_json("echo [x]") is None
    with pytest.raises(ContainerfileError, match="strings only"):
        parse_json('["a", 1]')


def test_flags_before_arguments() -> None:
    assert split_command('COPY --from=build --chown="a b" -- src /dst') == (
        "COPY",
        ["--from=build", "--chown=a b"],
        "src /dst",
    )
    assert extract_builder_flags("--x=1 rest --y") == ("rest --y", ["--x=1"])
    assert _dump("FROM a\nCOPY --chmod=755 a b\n").endswith(
        '(copy ["--chmod=755"] "a" "b")'
    )


def test_env_and_label_forms() -> None:
    assert parse_name_val("A=1 B='x y'", "ENV") == ["A", "1", "=", "B", "'x y'", "="]
    assert parse_name_val("A  x  y", "ENV") == ["A", "x  y", ""]
    with pytest.raises(ContainerfileError, match="must have two arguments"):
        parse_name_val("A", "ENV")
    with pytest.raises(ContainerfileError, match="can't find ="):
        parse_name_val("A=1 B", "LABEL")


def test_words_keep_quotes_and_escapes() -> None:
    assert parse_words('a "b c" d\\ e') == ["a", '"b c"', "d\\ e"]
    assert parse_words("a `b", "`") == ["a", "`b"]


def test_onbuild_and_healthcheck() -> None:
    text = (
        'FROM a\nONBUILD RUN ["x"]\nHEALTHCHECK --interval=5s CMD curl -f x\n'
        'HEALTHCHECK NONE\nHEALTHCHECK CMD ["true"]\n'
    )
    assert _dump(text) == (
        '(from "a")\n(onbuild (run "x"))\n'
        '(healthcheck ["--interval=5s"] "CMD" "curl -f x")\n'
        '(healthcheck "NONE")\n(healthcheck "CMD" "true")'
    )
    assert parse(text).nodes[4].json


def test_heredocs() -> None:
    text = (
        "FROM a\n"
        "RUN <<EOF python3\nprint(1)\nEOF\n"
        "COPY <<-'ONE' 3<<TWO /dst/\n\tfirst\n\tONE\nsecond\nTWO\n"
        "USER <<X\n"
    )
    result = parse(text)
    run, copy, user = result.nodes[1:]
    assert run.heredocs == [Heredoc("EOF", "print(1)\n")]
    assert (run.start_line, run.end_line) == (2, 4)
    assert copy.heredocs == [
        Heredoc("ONE", "\tfirst\n", expand=False, chomp=True),
        Heredoc("TWO", "second\n", file_descriptor=3),
    ]
    assert copy.args == ["<<-'ONE'", "3<<TWO", "/dst/"]
    assert user.heredocs == []


def test_heredoc_not_in_json_form() -> None:
    assert parse('FROM a\nRUN ["<<EOF"]\n').nodes[1].heredocs == []


def test_heredoc_helpers() -> None:
    doc = parse_heredoc('<<-"E"OF')
    assert doc == Heredoc("EOF", expand=False, chomp=True)
    assert parse_heredoc("<<EOF sh") is None
    with pytest.raises(ContainerfileError, match="matching single-quote"):
        parse_heredoc("<<'EOF")
    assert [d.name for d in heredocs_from_line("RUN <<A '<<B' <<  C")] == ["A", "C"]
    assert chomp_heredoc_content("\t\ta\n b\n\tc") == "a\n b\nc"


def test_errors_name_file_and_line() -> None:
    with pytest.raises(ContainerfileError) as caught:
        parse("FROM a\n\nRUN <<EOF\nnever ends\n", filename="ctx/Containerfile")
    err = caught.value
    assert isinstance(err, UsageError)
    assert (err.file, err.line) == ("ctx/Containerfile", 3)
    assert str(err) == "ctx/Containerfile:3: unterminated heredoc"


def test_instruction_error_points_at_its_first_line() -> None:
    with pytest.raises(
        ContainerfileError, match=r"^Containerfile:2: ENV must have two"
    ):
        parse("FROM a\nENV \\\n  PATH\n")


@pytest.mark.parametrize("text", ["", "# only\n\n# comments\n", "\ufeff\n"])
def test_no_instructions(text: str) -> None:
    with pytest.raises(ContainerfileError, match="file with no instructions"):
        parse(text)


def test_line_too_long() -> None:
    with pytest.raises(ContainerfileError, match="max allowed size of 65535"):
        parse("FROM a\nLABEL x=" + "a" * 65536 + "\n")


def test_crlf_and_bom() -> None:
    result = parse("\ufeffFROM a\r\nRUN <<EOF\r\nhi\r\nEOF\r\n")
    assert dump(result) == '(from "a")\n(run "<<EOF")'
    assert result.nodes[1].heredocs[0].content == "hi\r\n"


@pytest.mark.parametrize(
    ("text", "quoted"),
    [
        ("a\"b\\c'`", '"a\\"b\\\\c\'`"'),
        ("\x00\x07\x1b\x7f", '"\\x00\\a\\x1b\\x7f"'),
        ("é\u00a0\u2028\U000e0001🐳", '"é\\u00a0\\u2028\\U000e0001🐳"'),
        (
            b"\xff\xed\xa0\x80".decode("utf-8", "surrogateescape"),
            '"\\xff\\xed\\xa0\\x80"',
        ),
    ],
)
def test_go_quote(text: str, quoted: str) -> None:
    assert quote(text) == quoted
