"""Typed instructions from parsed Containerfiles, their checks and expansion."""

from __future__ import annotations

from dataclasses import replace

import pytest
from pybox.builder.instructions import (
    Add,
    Arg,
    ArgDeclaration,
    Cmd,
    Copy,
    Entrypoint,
    Env,
    Expandable,
    Expose,
    From,
    Healthcheck,
    InlineFile,
    Instruction,
    Label,
    Maintainer,
    Onbuild,
    Run,
    Shell,
    Stopsignal,
    User,
    Volume,
    Workdir,
    expander,
    from_node,
    parse_stages,
)
from pybox.builder.parser import ContainerfileError, parse

FILE = "Containerfile"
# Where the expected instructions of test_expand_per_instruction come from.
_AT = {"line": 1, "original": ""}


def _one(text: str) -> Instruction:
    """The instruction on the last line of ``FROM base`` + ``text``."""
    result = parse("FROM base\n" + text)
    return from_node(result.nodes[-1], filename=FILE)


def _error(text: str) -> str:
    with pytest.raises(ContainerfileError) as info:
        _one(text)
    return str(info.value)


# --- FROM and stages -------------------------------------------------------


def test_from_plain() -> None:
    assert from_node(parse("FROM alpine:3.19\n").nodes[0], filename=FILE) == From(
        line=1, original="FROM alpine:3.19", image="alpine:3.19"
    )


def test_from_as_and_platform() -> None:
    node = parse("FROM --platform=linux/arm64 alpine As Build-1\n").nodes[0]
    base = from_node(node, filename=FILE)
    assert isinstance(base, From)
    assert (base.image, base.stage_name, base.platform) == ("alpine", "build-1", "linux/arm64")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("FROM\n", "FROM requires either one or three arguments"),
        ("FROM a b\n", "FROM requires either one or three arguments"),
        ("FROM a is b\n", "FROM requires either one or three arguments"),
        ("FROM a AS 1st\n", 'invalid name for build stage: "1st", name can\'t start'),
        ("FROM --plat=x a\n", "unknown flag: --plat"),
        ("FROM --platform a\n", "Missing a value on flag: --platform"),
    ],
)
def test_from_errors(text: str, message: str) -> None:
    with pytest.raises(ContainerfileError) as info:
        from_node(parse(text).nodes[0], filename=FILE)
    assert str(info.value).startswith(f"{FILE}:1: {message}")


def test_stages_and_global_args() -> None:
    text = (
        "ARG BASE=alpine\n"
        "ARG V\n"
        "FROM $BASE AS build\n"
        "RUN make\n"
        "FROM scratch\n"
        "COPY --from=build /out /\n"
    )
    global_args, stages = parse_stages(parse(text), filename=FILE)
    assert [a.args for a in global_args] == [
        (ArgDeclaration(name="BASE", default="alpine"),),
        (ArgDeclaration(name="V"),),
    ]
    assert [(s.name, s.index, s.base.image) for s in stages] == [
        ("build", 0, "$BASE"),
        (None, 1, "scratch"),
    ]
    assert [type(i) for i in stages[0].instructions] == [Run]
    copy = stages[1].instructions[0]
    assert isinstance(copy, Copy) and copy.from_ == "build" and copy.line == 6


def test_instruction_before_from() -> None:
    with pytest.raises(ContainerfileError, match="^Containerfile:2: no build stage"):
        parse_stages(parse("ARG A\nRUN x\nFROM a\n"), filename=FILE)


def test_no_stage_at_all() -> None:
    with pytest.raises(ContainerfileError, match="^Containerfile:1: dockerfile contains no stages"):
        parse_stages(parse("ARG A\n"), filename=FILE)


def test_duplicate_stage_name() -> None:
    with pytest.raises(ContainerfileError, match='^Containerfile:2: duplicate stage name "x"'):
        parse_stages(parse("FROM a AS x\nFROM b AS X\n"), filename=FILE)


def test_error_names_file_and_first_line() -> None:
    text = "FROM a\nRUN echo \\\n  hi\nCOPY --nope=1 \\\n  a b\n"
    with pytest.raises(ContainerfileError) as info:
        parse_stages(parse(text), filename="ctx/Dockerfile")
    assert str(info.value) == "ctx/Dockerfile:4: unknown flag: --nope"
    assert (info.value.file, info.value.line) == ("ctx/Dockerfile", 4)


def test_unknown_instruction() -> None:
    assert _error("FOO bar") == f"{FILE}:2: unknown instruction: FOO"


# --- RUN, CMD, ENTRYPOINT, SHELL -------------------------------------------


def test_run_shell_and_exec_form() -> None:
    assert _one("RUN echo $HOME && ls") == Run(
        line=2, original="RUN echo $HOME && ls", command="echo $HOME && ls"
    )
    run = _one('RUN ["sh", "-c", "echo hi"]')
    assert isinstance(run, Run) and run.command == ("sh", "-c", "echo hi")


def test_run_flags_are_kept_raw() -> None:
    run = _one(
        "RUN --mount=type=cache,target=/root/.cache --mount=type=tmpfs,target=/t"
        " --network=none make"
    )
    assert isinstance(run, Run)
    assert run.mounts == ("type=cache,target=/root/.cache", "type=tmpfs,target=/t")
    assert run.network == "none"
    assert run.command == "make"


def test_run_network_given_twice() -> None:
    assert _error("RUN --network=none --network=host x") == (
        f"{FILE}:2: Duplicate flag specified: --network"
    )


def test_run_heredoc() -> None:
    run = _one("RUN <<-EOF sh\n\techo $A\n\tEOF\n")
    assert isinstance(run, Run)
    assert run.command == "<<-EOF sh"
    assert run.heredocs == (InlineFile(name="EOF", content="echo $A\n", expand=True),)


def test_cmd_and_entrypoint() -> None:
    assert _one('CMD ["nginx", "-g", "daemon off;"]') == Cmd(
        line=2, original='CMD ["nginx", "-g", "daemon off;"]', command=("nginx", "-g", "daemon off;")
    )
    entrypoint = _one("ENTRYPOINT exec top -b")
    assert isinstance(entrypoint, Entrypoint) and entrypoint.command == "exec top -b"
    empty = _one("ENTRYPOINT []")
    assert isinstance(empty, Entrypoint) and empty.command == ()


def test_shell() -> None:
    shell = _one('SHELL ["/bin/bash", "-eo", "pipefail", "-c"]')
    assert isinstance(shell, Shell) and shell.command == ("/bin/bash", "-eo", "pipefail", "-c")
    assert _error("SHELL /bin/bash -c") == f"{FILE}:2: SHELL requires the arguments to be in JSON form"
    assert _error("SHELL []") == f"{FILE}:2: SHELL requires at least one argument"


# --- ENV, LABEL, ARG -------------------------------------------------------


def test_env_both_forms() -> None:
    old = _one("ENV PATH /usr/local/bin:$PATH  with spaces")
    assert isinstance(old, Env) and old.pairs == (("PATH", "/usr/local/bin:$PATH  with spaces"),)
    new = _one('ENV A=1 B="two words" C=')
    assert isinstance(new, Env)
    assert new.pairs == (("A", "1"), ("B", '"two words"'), ("C", ""))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("ENV", "ENV requires at least one argument"),
        ("ENV =x", "ENV names can not be blank"),
        ("ENV --x=1 A=1", "unknown flag: --x"),
        ("LABEL", "LABEL requires at least one argument"),
    ],
)
def test_env_label_errors(text: str, message: str) -> None:
    assert _error(text) == f"{FILE}:2: {message}"


def test_label() -> None:
    label = _one('LABEL org.opencontainers.image.title="my app" version=1')
    assert isinstance(label, Label)
    assert label.pairs == (("org.opencontainers.image.title", '"my app"'), ("version", "1"))


def test_arg_forms() -> None:
    arg = _one("ARG A B=2 C= D=x=y")
    assert arg == Arg(
        line=2,
        original="ARG A B=2 C= D=x=y",
        args=(
            ArgDeclaration(name="A"),
            ArgDeclaration(name="B", default="2"),
            ArgDeclaration(name="C", default=""),
            ArgDeclaration(name="D", default="x=y"),
        ),
    )
    assert _error("ARG") == f"{FILE}:2: ARG requires at least one argument"
    assert _error("ARG =1") == f"{FILE}:2: ARG names can not be blank"


# --- ADD, COPY -------------------------------------------------------------


def test_copy_flags() -> None:
    copy = _one("COPY --from=build --chown=app:app --chmod=0755 --link a b /dst/")
    assert copy == Copy(
        line=2,
        original="COPY --from=build --chown=app:app --chmod=0755 --link a b /dst/",
        sources=("a", "b"),
        dest="/dst/",
        from_="build",
        chown="app:app",
        chmod="0755",
        link=True,
    )


def test_copy_json_form_and_empty_flag() -> None:
    copy = _one('COPY --chown= ["a b", "/c d/"]')
    assert isinstance(copy, Copy)
    assert (copy.sources, copy.dest, copy.chown) == (("a b",), "/c d/", None)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("COPY a", "COPY requires at least two arguments"),
        ("ADD", "ADD requires at least two arguments"),
        ("COPY --checksum=x a b", "unknown flag: --checksum"),
        ("COPY --link=maybe a b", "expecting boolean value for flag --link, not: maybe"),
        ("COPY --from a b", "Missing a value on flag: --from"),
        ("COPY a <<EOF\nx\nEOF", "COPY cannot accept a heredoc as a destination"),
    ],
)
def test_copy_add_errors(text: str, message: str) -> None:
    assert _error(text).startswith(f"{FILE}:2: {message}")


def test_copy_heredocs_become_inline_files() -> None:
    copy = _one("COPY <<A <<'B' x /dst/\nhello $N\nA\n\tplain\nB\n")
    assert isinstance(copy, Copy)
    assert copy.sources == ("x",)
    assert copy.heredocs == (
        InlineFile(name="A", content="hello $N\n", expand=True),
        InlineFile(name="B", content="\tplain\n", expand=False),
    )


def test_add_flags() -> None:
    add = _one(
        "ADD --chown=1:2 --chmod=644 --keep-git-dir=true --checksum=sha256:abc"
        " https://example.com/x.git /src"
    )
    assert isinstance(add, Add)
    assert (add.chown, add.chmod, add.keep_git_dir, add.checksum, add.link) == (
        "1:2", "644", True, "sha256:abc", False,
    )
    assert add.sources == ("https://example.com/x.git",) and add.dest == "/src"
    assert _error("ADD --from=x a b") == f"{FILE}:2: unknown flag: --from"


# --- the one-value instructions --------------------------------------------


def test_simple_instructions() -> None:
    assert _one("EXPOSE 80/tcp 53/udp") == Expose(
        line=2, original="EXPOSE 80/tcp 53/udp", ports=("80/tcp", "53/udp")
    )
    volume = _one('VOLUME ["/data", "/logs"]')
    assert isinstance(volume, Volume) and volume.paths == ("/data", "/logs")
    plain = _one("VOLUME /a /b")
    assert isinstance(plain, Volume) and plain.paths == ("/a", "/b")
    user = _one("USER app:staff")
    assert isinstance(user, User) and user.user == "app:staff"
    workdir = _one("WORKDIR /srv/my app")
    assert isinstance(workdir, Workdir) and workdir.path == "/srv/my app"
    signal = _one("STOPSIGNAL SIGQUIT")
    assert isinstance(signal, Stopsignal) and signal.signal == "SIGQUIT"
    maintainer = _one("MAINTAINER Jane <jane@example.com>")
    assert isinstance(maintainer, Maintainer) and maintainer.name == "Jane <jane@example.com>"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("EXPOSE", "EXPOSE requires at least one argument"),
        ("VOLUME", "VOLUME requires at least one argument"),
        ('VOLUME ["/a", " "]', "VOLUME specified can not be an empty string"),
        ("USER", "USER requires exactly one argument"),
        ("WORKDIR", "WORKDIR requires exactly one argument"),
        ("STOPSIGNAL", "STOPSIGNAL requires exactly one argument"),
        ("MAINTAINER", "MAINTAINER requires exactly one argument"),
        ("USER --uid=1 app", "unknown flag: --uid"),
    ],
)
def test_simple_errors(text: str, message: str) -> None:
    assert _error(text) == f"{FILE}:2: {message}"


# --- HEALTHCHECK -----------------------------------------------------------

SECOND = 1_000_000_000


def test_healthcheck_options() -> None:
    check = _one(
        "HEALTHCHECK --interval=1m30s --timeout=1.5s --start-period=2m"
        " --start-interval=500ms --retries=3 CMD curl -f http://localhost/"
    )
    assert isinstance(check, Healthcheck)
    assert check.test == ("CMD-SHELL", "curl -f http://localhost/")
    assert (check.interval, check.timeout, check.start_period, check.start_interval) == (
        90 * SECOND, 3 * SECOND // 2, 120 * SECOND, SECOND // 2,
    )
    assert check.retries == 3


def test_healthcheck_exec_form_and_defaults() -> None:
    check = _one('HEALTHCHECK CMD ["/bin/check", "-q"]')
    assert check == Healthcheck(
        line=2, original='HEALTHCHECK CMD ["/bin/check", "-q"]', test=("CMD", "/bin/check", "-q")
    )


def test_healthcheck_none() -> None:
    check = _one("HEALTHCHECK NONE")
    assert isinstance(check, Healthcheck) and check.test is None
    assert _error("HEALTHCHECK NONE x") == f"{FILE}:2: HEALTHCHECK NONE takes no arguments"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("HEALTHCHECK", "HEALTHCHECK requires at least one argument"),
        ("HEALTHCHECK CMD", "Missing command after HEALTHCHECK CMD"),
        ("HEALTHCHECK RUN x", 'Unknown type "RUN" in HEALTHCHECK (try CMD)'),
        ("HEALTHCHECK --interval=10 CMD x", 'time: missing unit in duration "10"'),
        ("HEALTHCHECK --interval=1d CMD x", 'time: unknown unit "d" in duration "1d"'),
        ("HEALTHCHECK --timeout=s CMD x", 'time: invalid duration "s"'),
        ("HEALTHCHECK --timeout=100us CMD x", 'Interval "timeout" cannot be less than 1ms'),
        ("HEALTHCHECK --start-period=-1s CMD x", 'Interval "start-period" cannot be less than 1ms'),
        ("HEALTHCHECK --retries=x CMD x", 'strconv.ParseInt: parsing "x": invalid syntax'),
        ("HEALTHCHECK --retries=-1 CMD x", "--retries cannot be negative (-1)"),
        ("HEALTHCHECK --retries=9999999999 CMD x",
         'strconv.ParseInt: parsing "9999999999": value out of range'),
        ("HEALTHCHECK --intervall=1s CMD x", "unknown flag: --intervall"),
    ],
)
def test_healthcheck_errors(text: str, message: str) -> None:
    assert _error(text) == f"{FILE}:2: {message}"


def test_healthcheck_zero_means_unset() -> None:
    check = _one("HEALTHCHECK --interval=0 --timeout=0s CMD x")
    assert isinstance(check, Healthcheck) and (check.interval, check.timeout) == (0, 0)


# --- ONBUILD ---------------------------------------------------------------


def test_onbuild_keeps_trigger_text() -> None:
    onbuild = _one("ONBUILD  COPY --chown=$U . /app")
    assert onbuild == Onbuild(
        line=2, original="ONBUILD  COPY --chown=$U . /app", trigger="COPY --chown=$U . /app"
    )
    assert not isinstance(onbuild, Expandable)


def test_onbuild_heredoc_is_appended() -> None:
    onbuild = _one("onbuild RUN <<EOF\necho hi\nEOF\n")
    assert isinstance(onbuild, Onbuild) and onbuild.trigger == "RUN <<EOF\necho hi\nEOF"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("ONBUILD", "ONBUILD requires at least one argument"),
        ("ONBUILD ONBUILD RUN x", "Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed"),
        ("ONBUILD FROM x", "FROM isn't allowed as an ONBUILD trigger"),
        ("ONBUILD maintainer x", "MAINTAINER isn't allowed as an ONBUILD trigger"),
    ],
)
def test_onbuild_errors(text: str, message: str) -> None:
    assert _error(text) == f"{FILE}:2: {message}"


# --- expansion -------------------------------------------------------------


def test_expander_reports_used_names() -> None:
    fn, used = expander({"A": "1", "B": "two", "EMPTY": ""})
    assert fn("${A}-$B-${UNSET:-d}-'$A'") == "1-two-d-$A"
    assert used == {"A", "B"}
    assert fn("$EMPTY") == ""
    assert used == {"A", "B", "EMPTY"}


def test_expander_escape_character() -> None:
    fn, _ = expander({"A": "1"}, "`")
    assert fn("`$A$A") == "$A1"


def test_expand_returns_a_substituted_copy() -> None:
    copy = _one("COPY --from=$STAGE --chown=$U:$G --chmod=$M $SRC ${DST}/")
    assert isinstance(copy, Copy)
    fn, used = expander({"STAGE": "build", "U": "app", "G": "app", "M": "644",
                         "SRC": "a.txt", "DST": "/srv", "OTHER": "x"})
    expanded = copy.expand(fn)
    assert (expanded.from_, expanded.chown, expanded.chmod, expanded.sources, expanded.dest) == (
        "build", "app:app", "644", ("a.txt",), "/srv/",
    )
    assert used == {"STAGE", "U", "G", "M", "SRC", "DST"}
    assert copy.sources == ("$SRC",)  # the original is unchanged
    assert (expanded.line, expanded.original) == (copy.line, copy.original)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("FROM --platform=$P $IMG AS base", From(**_AT, image="alpine", stage_name="base", platform="linux/amd64")),
        ('ENV $K="$V w" X=$K', Env(**_AT, pairs=(("key", "val w"), ("X", "key")))),
        ("ENV K $V  $V", Env(**_AT, pairs=(("K", "val  val"),))),
        ('LABEL "$K"=$V', Label(**_AT, pairs=(("key", "val"),))),
        ("EXPOSE $PORT/udp", Expose(**_AT, ports=("53/udp",))),
        ("VOLUME $DIR /x", Volume(**_AT, paths=("/data", "/x"))),
        ("USER ${U:-nobody}", User(**_AT, user="nobody")),
        ("WORKDIR $DIR/sub", Workdir(**_AT, path="/data/sub")),
        ("STOPSIGNAL $SIG", Stopsignal(**_AT, signal="SIGTERM")),
        ("ARG $K=$V Z", Arg(**_AT, args=(ArgDeclaration(name="key", default="val"), ArgDeclaration(name="Z")))),
        ("ADD --chown=$U --checksum=$SUM $SRC /", Add(**_AT, sources=("a",), dest="/", chown="", checksum="sha256:0")),
    ],
)
def test_expand_per_instruction(text: str, expected: Instruction) -> None:
    env = {"P": "linux/amd64", "IMG": "alpine", "K": "key", "V": "val", "PORT": "53",
           "DIR": "/data", "SIG": "SIGTERM", "SRC": "a", "SUM": "sha256:0"}
    node = parse(text).nodes[0]
    instruction = from_node(node, filename=FILE)
    assert isinstance(instruction, Expandable)
    fn, _ = expander(env)
    expanded = instruction.expand(fn)
    assert replace(expanded, original="") == expected


def test_from_keeps_stage_name_unexpanded() -> None:
    base = from_node(parse("FROM $IMG AS base\n").nodes[0], filename=FILE)
    assert isinstance(base, From)
    fn, _ = expander({"IMG": "alpine"})
    assert base.expand(fn).stage_name == "base"


@pytest.mark.parametrize(
    "text",
    ["RUN echo $A", "CMD $A", "ENTRYPOINT $A", 'SHELL ["$A"]', "HEALTHCHECK CMD $A"],
)
def test_build_time_text_is_not_expandable(text: str) -> None:
    assert not isinstance(_one(text), Expandable)
