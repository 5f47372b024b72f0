"""The executor's pure parts: config instructions, RUN's command line, ARG values, cache keys."""

from __future__ import annotations


import pytest

from pybox.builder.args import BuildArgs, Scope, parse_build_args, platform_args
from pybox.builder.cache import cache_key
from pybox.builder.instructions import ArgDeclaration, Run, from_node
from pybox.builder.metadata import apply_metadata, workdir_path
from pybox.builder.parser import parse
from pybox.builder.runstep import plan_run
from pybox.builder.state import ImageState, config_document
from pybox.errors import UsageError
from pybox.image import Platform

AMD64 = Platform(os="linux", architecture="amd64")


def _instruction(line: str):
    return from_node(parse(line).nodes[0], filename="Containerfile")


def _apply(state: ImageState, *lines: str) -> ImageState:
    cmd_set = False
    for line in lines:
        state = apply_metadata(state, _instruction(line), cmd_set=cmd_set)
        cmd_set = cmd_set or line.startswith("CMD")
    return state


def test_config_instructions_fill_the_docker_config_fields() -> None:
    state = _apply(
        ImageState(platform=AMD64),
        "ENV A=1 B=two",
        "ENV A 3",
        "LABEL x=y z=w",
        "EXPOSE 80 8000-8002/udp 53/SCTP",
        "VOLUME /data /cache",
        "USER app:app",
        "STOPSIGNAL SIGINT",
        "SHELL [\"/bin/bash\", \"-euc\"]",
        "CMD make all",
        "HEALTHCHECK --interval=5s --timeout=1s --retries=3 CMD curl -f http://x/",
        "ONBUILD RUN echo hi",
        "MAINTAINER someone",
    )
    config = state.config
    assert config["Env"] == ["B=two", "A=3"]
    assert config["Labels"] == {"x": "y", "z": "w"}
    assert set(config["ExposedPorts"]) == {"80/tcp", "8000/udp", "8001/udp", "8002/udp", "53/sctp"}
    assert config["Volumes"] == {"/data": {}, "/cache": {}}
    assert config["User"] == "app:app"
    assert config["StopSignal"] == "SIGINT"
    assert config["Shell"] == ["/bin/bash", "-euc"]
    # The shell form runs through the SHELL in effect.
    assert config["Cmd"] == ["/bin/bash", "-euc", "make all"]
    assert config["Healthcheck"] == {"Test": ["CMD-SHELL", "curl -f http://x/"], "Interval": 5_000_000_000,
                                     "Timeout": 1_000_000_000, "Retries": 3}
    assert config["OnBuild"] == ["RUN echo hi"]
    assert config_document(state)["author"] == "someone"
    assert all(h["empty_layer"] for h in state.history) and len(state.history) == 12


def test_entrypoint_drops_an_inherited_cmd_but_keeps_one_set_in_the_stage() -> None:
    inherited = ImageState(platform=AMD64, config={"Cmd": ["/bin/sh"]})
    assert "Cmd" not in _apply(inherited, 'ENTRYPOINT ["/app"]').config
    kept = _apply(inherited, 'CMD ["--help"]', 'ENTRYPOINT ["/app"]').config
    assert kept["Cmd"] == ["--help"] and kept["Entrypoint"] == ["/app"]


def test_healthcheck_none_and_bad_values() -> None:
    assert _apply(ImageState(platform=AMD64), "HEALTHCHECK NONE").config["Healthcheck"] == {"Test": ["NONE"]}
    with pytest.raises(UsageError, match="STOPSIGNAL"):
        _apply(ImageState(platform=AMD64), "STOPSIGNAL SIGNOPE")
    with pytest.raises(UsageError, match="EXPOSE"):
        _apply(ImageState(platform=AMD64), "EXPOSE 80/icmp")


def test_workdir_is_relative_to_the_previous_one() -> None:
    state = ImageState(platform=AMD64, config={"WorkingDir": "/a"})
    assert workdir_path(state, "b/../c") == "/a/c"
    assert workdir_path(state, "/x") == "/x"
    assert workdir_path(ImageState(platform=AMD64), "rel") == "/rel"


@pytest.mark.parametrize(
    ("text", "argv", "script"),
    [
        ("RUN echo hi", ("/bin/sh", "-c", "echo hi"), None),
        ('RUN ["echo", "hi"]', ("echo", "hi"), None),
        ("RUN <<EOF\necho a\necho b\nEOF", ("/bin/sh", "-c", "echo a\necho b\n"), None),
        ("RUN <<EOF\n#!/bin/sh -e\necho a\nEOF", ("/dev/pipes/EOF",), ("EOF", "#!/bin/sh -e\necho a\n")),
        ("RUN cat <<EOF > /f\nx\nEOF", ("/bin/sh", "-c", "cat <<EOF > /f\nx\nEOF"), None),
        ("RUN cat <<A <<B\n1\nA\n2\nB", ("/bin/sh", "-c", "cat <<A <<B\n1\nA\n2\nB"), None),
    ],
)
def test_run_command_lines(text: str, argv: tuple[str, ...], script: tuple[str, str] | None) -> None:
    instruction = _instruction(text)
    assert isinstance(instruction, Run)
    plan = plan_run(ImageState(platform=AMD64), instruction)
    assert plan.argv == argv and plan.script == script and plan.network == "host"


def test_run_uses_shell_and_rejects_what_it_cannot_do() -> None:
    state = ImageState(platform=AMD64, config={"Shell": ["/bin/ash", "-c"]})
    assert plan_run(state, _instruction("RUN ls")).argv == ("/bin/ash", "-c", "ls")
    assert plan_run(state, _instruction("RUN --network=none ls")).network == "none"
    with pytest.raises(UsageError, match="--mount"):
        plan_run(state, _instruction("RUN --mount=type=cache,target=/x ls"))


def test_build_args_scopes() -> None:
    args = BuildArgs(given={"V": "cli", "HTTP_PROXY": "http://p", "UNUSED": "1"},
                     automatic=platform_args(AMD64, AMD64))
    globals_ = Scope(values=dict(args.automatic))
    globals_.declare(ArgDeclaration(name="G", default="global"), args, None)
    stage = Scope()
    stage.declare(ArgDeclaration(name="G"), args, globals_.values)  # re-declared: the global value
    stage.declare(ArgDeclaration(name="V", default="default"), args, globals_.values)  # --build-arg wins
    stage.declare(ArgDeclaration(name="N"), args, globals_.values)  # no value anywhere
    stage.declare(ArgDeclaration(name="TARGETARCH"), args, globals_.values)
    assert stage.set() == {"G": "global", "V": "cli", "TARGETARCH": "amd64"}
    assert stage.values["N"] is None
    assert args.unused() == ["UNUSED"]
    assert platform_args(Platform(os="linux", architecture="arm", variant="v7"), AMD64)["TARGETPLATFORM"] == \
        "linux/arm/v7"


def test_parse_build_args_takes_bare_names_from_the_environment() -> None:
    assert parse_build_args(["A=1", "B", "C", "D=x=y"], {"B": "env"}) == {"A": "1", "B": "env", "D": "x=y"}
    with pytest.raises(UsageError):
        parse_build_args(["=v"], {})


def test_cache_keys_follow_content_not_history() -> None:
    a = ImageState(platform=AMD64, config={"Env": ["A=1"]})
    same = ImageState(platform=AMD64, config={"Env": ["A=1"]}, history=({"created_by": "other"},))
    other = ImageState(platform=AMD64, config={"Env": ["A=2"]})
    doc = {"kind": "Run", "command": "make"}
    assert cache_key(a, doc, {}) == cache_key(same, doc, {})
    assert cache_key(a, doc, {}) != cache_key(other, doc, {})
    assert cache_key(a, doc, {"V": "1"}) != cache_key(a, doc, {"V": "2"})
    assert cache_key(a, doc, {}, "hash1") != cache_key(a, doc, {}, "hash2")
