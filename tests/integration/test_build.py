"""`pybox build` on the real kernel: what a user finds in the image it made.

Every build starts from the session's umoci-made busybox (User nobody,
WorkingDir /work, Cmd /bin/sh), pulled once per module. A test checks what
a user would: `pybox run --rm` of the result, `pybox inspect`, `pybox
history`, the image config (as `skopeo inspect --config` shows it), the
build's own output. The expectations are BuildKit's (Docker's Dockerfile
reference where BuildKit follows it). After every test nothing may remain:
no mount under the store, no pybox cgroup, no container record, nothing in
the store's tmp/.
"""

from __future__ import annotations

import bz2
import gzip
import io
import json
import lzma
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.build import Builder, building, error_lines, image_id_of, leftovers, steps
from support.skip import require_root

_ARCH = {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(), platform.machine())
HOST_PLATFORM = f"linux/{_ARCH}"
# BuildKit's emptyImage: what FROM scratch starts with (system.DefaultPathEnv).
DEFAULT_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


@pytest.fixture(autouse=True)
def _root() -> None:
    require_root()


@pytest.fixture
def tag(request: pytest.FixtureRequest) -> str:
    """A name of the test's own; under localhost/ so a missing image is never looked up on the internet."""
    slug = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower())[:60].strip("-")
    return f"localhost/build-tests/{slug}:latest"


@pytest.fixture
def bb(busybox_store, pybox, tmp_path: Path) -> Iterator[Builder]:
    """A Builder on the module's shared busybox store, with a fresh context directory."""
    root, ref = busybox_store
    with building(pybox, root, ref, tmp_path / "context") as builder:
        yield builder


@pytest.fixture
def fresh(busybox_store, pybox, tmp_path: Path) -> Iterator[Builder]:
    """A Builder on a store of the test's own (a copy of the pulled one): its cache starts empty."""
    root, ref = busybox_store
    own = tmp_path / "own-store"
    # cp -a keeps what the store holds: modes, owners, xattrs, relative links.
    subprocess.run(["cp", "-a", str(root), str(own)], check=True)
    shutil.rmtree(own / "cache" / "build", ignore_errors=True)
    with building(pybox, own, ref, tmp_path / "context") as builder:
        yield builder


def _lines(text: str) -> list[str]:
    return text.splitlines()


# --- FROM ------------------------------------------------------------------------


def test_from_global_arg_platform_and_earlier_stage(bb: Builder, tag: str) -> None:
    image = bb.base.rpartition(":")[0]
    bb.build(f"""
        ARG BASE_TAG=no-such-tag
        FROM --platform={HOST_PLATFORM} {image}:${{BASE_TAG}} AS first
        USER root
        RUN echo first > /first
        FROM first
        RUN echo second > /second
        """, "-t", tag, "--build-arg", "BASE_TAG=gzip")
    assert bb.sh(tag, "cat /first /second") == "first\nsecond\n"
    doc = bb.inspect(tag)
    assert (doc["Os"], doc["Architecture"]) == ("linux", _ARCH)
    # The child stage inherits the first stage's config.
    assert doc["Config"]["User"] == "root"


def test_from_digest_pin(bb: Builder, tag: str) -> None:
    digest = bb.inspect(bb.base)["Digest"]
    pinned = f"{bb.base.rpartition(':')[0]}@{digest}"
    bb.build(f"""
        FROM {pinned}
        RUN echo pinned > /tmp/pinned
        """, "-t", tag)
    assert bb.sh(tag, "cat /tmp/pinned") == "pinned\n"
    assert bb.inspect(tag)["RootFS"]["Layers"][0] == bb.inspect(bb.base)["RootFS"]["Layers"][0]


def test_from_scratch(bb: Builder, tag: str) -> None:
    bb.write({"hello.txt": "hello from scratch\n"})
    bb.build("""
        FROM scratch
        COPY --from=@BASE@ /bin/busybox /bin/busybox
        COPY hello.txt /hello.txt
        CMD ["/bin/busybox", "cat", "/hello.txt"]
        """, "-t", tag)
    assert bb.run(tag).stdout == "hello from scratch\n"
    doc = bb.inspect(tag)
    assert len(doc["RootFS"]["Layers"]) == 2
    assert doc["Config"]["User"] == "" and doc["Author"] == ""
    # BuildKit's scratch (emptyImage): a default PATH and / as working directory.
    assert (doc["Config"]["Env"], doc["Config"]["WorkingDir"]) == ([DEFAULT_PATH], "/")


# --- RUN ---------------------------------------------------------------------------


def test_run_shell_exec_and_heredoc_forms(bb: Builder, tag: str) -> None:
    bb.build("""
        FROM @BASE@
        USER root
        RUN echo shell form > /shell-form
        RUN ["/bin/sh", "-c", "echo exec form > /exec-form"]
        RUN ["touch", "/exec-touched"]
        RUN <<EOF
        echo line one > /heredoc
        echo line two >> /heredoc
        EOF
        RUN <<EOF
        #!/bin/sh
        echo "$0" > /shebang
        EOF
        ENV WHO=world
        RUN cat <<EOF > /in-command
        hello $WHO
        EOF
        RUN cat <<'EOF' > /quoted
        hello $WHO
        EOF
        RUN cat <<A > /two-a && cat <<B > /two-b
        first
        A
        second
        B
        RUN cat <<-EOF > /tabs
        \tone tab
        \t\ttwo tabs
        \tEOF
        """, "-t", tag)
    out = bb.sh(tag, "cat /shell-form /exec-form /heredoc /in-command /quoted /two-a /two-b /tabs; "
                     "test -f /exec-touched && echo touched")
    assert _lines(out) == ["shell form", "exec form", "line one", "line two", "hello world", "hello $WHO",
                           "first", "second", "one tab", "two tabs", "touched"]
    # With a #! line the heredoc is a file the container executes, not text for `sh -c`.
    script = bb.sh(tag, "cat /shebang").strip()
    assert script not in ("/bin/sh", "sh") and script.endswith("EOF")


def test_shell_changes_run_and_shell_form_cmd(bb: Builder, tag: str) -> None:
    bb.build(r"""
        FROM @BASE@
        USER root
        RUN printf '#!/bin/sh\necho "$*" >> /shell.log\nexec /bin/sh "$@"\n' > /bin/logsh && chmod 755 /bin/logsh
        SHELL ["/bin/logsh", "-c"]
        RUN echo via logsh > /via
        CMD echo from cmd
        """, "-t", tag)
    assert bb.sh(tag, "cat /via /shell.log") == "via logsh\n-c echo via logsh > /via\n"
    config = bb.config(tag)["config"]
    assert config["Shell"] == ["/bin/logsh", "-c"]
    assert config["Cmd"] == ["/bin/logsh", "-c", "echo from cmd"]


def test_user_is_who_run_runs_as(bb: Builder, tag: str) -> None:
    bb.build("""
        FROM @BASE@
        RUN id -u > /tmp/default
        USER 1234:5678
        RUN echo "$(id -u) $(id -g)" > /tmp/numeric
        USER root
        RUN id -u > /tmp/root
        USER nobody
        """, "-t", tag)
    assert _lines(bb.sh(tag, "cat /tmp/default /tmp/numeric /tmp/root; id -u")) == ["65534", "1234 5678", "0",
                                                                                   "65534"]
    assert bb.inspect(tag)["Config"]["User"] == "nobody"


def test_workdir_is_created_and_relative_to_the_previous(bb: Builder, tag: str) -> None:
    bb.build("""
        FROM @BASE@
        USER root
        WORKDIR /app
        WORKDIR sub/dir
        RUN pwd > /pwd
        WORKDIR ../other
        ARG PARENT=/from-arg
        ENV CHILD=from-env
        WORKDIR $PARENT/$CHILD
        USER nobody
        WORKDIR /owned
        """, "-t", tag)
    assert bb.inspect(tag)["Config"]["WorkingDir"] == "/owned"
    out = bb.sh(tag, "cat /pwd; pwd; test -d /app/sub/other && test -d /from-arg/from-env && echo made; "
                     "stat -c %U /owned /app")
    assert _lines(out) == ["/app/sub/dir", "/owned", "made", "nobody", "root"]


def test_dockerfile_is_the_default_when_there_is_no_containerfile(bb: Builder, tag: str) -> None:
    (bb.context / "Dockerfile").write_text(f"FROM {bb.base}\nLABEL from=dockerfile\n")
    bb.build(None, "-t", tag)
    assert bb.inspect(tag)["Config"]["Labels"]["from"] == "dockerfile"
    # With both, Containerfile wins.
    bb.build(f"FROM {bb.base}\nLABEL from=containerfile\n", "-t", tag)
    assert bb.inspect(tag)["Config"]["Labels"]["from"] == "containerfile"


# --- CMD / ENTRYPOINT ------------------------------------------------------------------


def test_cmd_and_entrypoint(bb: Builder, tag: str) -> None:
    bb.build("""
        FROM @BASE@ AS resets
        ENTRYPOINT ["echo", "entry"]

        FROM @BASE@ AS keeps
        CMD ["kept"]
        ENTRYPOINT ["echo"]

        FROM @BASE@ AS shell-forms
        ENTRYPOINT echo shell entry
        """, "-t", tag, "--target", "resets")
    config = bb.inspect(tag)["Config"]
    # An ENTRYPOINT drops the Cmd inherited from the base image (/bin/sh here).
    assert config["Entrypoint"] == ["echo", "entry"] and config["Cmd"] is None
    assert bb.run(tag).stdout == "entry\n"

    bb.build(None, "-t", tag, "--target", "keeps")
    config = bb.inspect(tag)["Config"]
    assert config["Entrypoint"] == ["echo"] and config["Cmd"] == ["kept"]
    assert bb.run(tag).stdout == "kept\n"
    assert bb.run(tag, "given").stdout == "given\n"

    bb.build(None, "-t", tag, "--target", "shell-forms")
    config = bb.inspect(tag)["Config"]
    assert config["Entrypoint"] == ["/bin/sh", "-c", "echo shell entry"] and config["Cmd"] is None
    assert bb.run(tag).stdout == "shell entry\n"


def test_entrypoint_drops_a_cmd_inherited_from_an_earlier_stage(bb: Builder, tag: str) -> None:
    # The CMD of stage "parent" is inherited by the next stage, not set in it: BuildKit's cmdSet is per
    # stage, so the child's ENTRYPOINT resets it as it would an image's.
    bb.build("""
        FROM @BASE@ AS parent
        CMD ["from-parent"]
        FROM parent
        ENTRYPOINT ["echo", "child"]
        """, "-t", tag)
    config = bb.inspect(tag)["Config"]
    assert config["Entrypoint"] == ["echo", "child"] and config["Cmd"] is None
    assert bb.run(tag).stdout == "child\n"


# --- config-only instructions -------------------------------------------------------


def test_config_instructions(bb: Builder, tag: str) -> None:
    bb.build("""
        FROM @BASE@
        MAINTAINER Jane Doe <jane@example.com>
        LABEL version="1.0" "with space"="a b"
        LABEL org.example.pybox=overridden
        EXPOSE 80 7000-7002/udp 443/tcp
        ENV A=1 B="two words"
        ENV C c value
        ENV D=${A}-x E=$B
        LABEL expanded=$D
        VOLUME /v1 /v2
        VOLUME ["/v3"]
        STOPSIGNAL SIGINT
        HEALTHCHECK --interval=5s --timeout=3s --start-period=2s --start-interval=1s --retries=4 \\
            CMD echo ok
        """, "-t", tag)
    doc = bb.inspect(tag)
    config = doc["Config"]
    assert doc["Author"] == "Jane Doe <jane@example.com>"
    assert config["Labels"] == {"org.opencontainers.image.title": "pybox test busybox",
                                "org.example.pybox": "overridden", "version": "1.0", "with space": "a b",
                                "expanded": "1-x"}
    assert set(config["ExposedPorts"]) == {"8080/tcp", "53/udp", "80/tcp", "7000/udp", "7001/udp", "7002/udp",
                                           "443/tcp"}
    assert config["Env"] == ["PATH=/usr/local/bin:/usr/bin:/bin", "PYBOX_TEST=busybox", "A=1", "B=two words",
                             "C=c value", "D=1-x", "E=two words"]
    assert set(config["Volumes"]) == {"/data", "/v1", "/v2", "/v3"}
    assert config["StopSignal"] == "SIGINT"
    assert config["Healthcheck"] == {"Test": ["CMD-SHELL", "echo ok"], "Interval": 5_000_000_000,
                                     "Timeout": 3_000_000_000, "StartPeriod": 2_000_000_000,
                                     "StartInterval": 1_000_000_000, "Retries": 4}
    env = _lines(bb.run(tag, "env").stdout)
    assert {"A=1", "B=two words", "C=c value", "D=1-x", "E=two words"} <= set(env)
    # The image config itself uses Docker's field names.
    raw = bb.config(tag)
    assert raw["author"] == "Jane Doe <jane@example.com>"
    assert raw["config"]["StopSignal"] == "SIGINT"
    assert raw["config"]["Healthcheck"] == config["Healthcheck"]


def test_escape_directive_makes_backslash_literal(bb: Builder, tag: str) -> None:
    """The Dockerfile reference's `# escape=` example: ` escapes and continues lines, \\ is a plain character.

    buildah 1.28 mishandles this in ENV, so the expectation is BuildKit's documented behaviour.
    """
    bb.build(r"""
        # escape=`
        FROM @BASE@
        ENV WINPATH=C:\Users\app `
            QUOTED="a `"b`" c" `
            DOLLAR=`$HOME
        USER root
        RUN echo "$WINPATH|$QUOTED|$DOLLAR" > /seen && `
            echo second-line >> /seen
        """, "-t", tag)
    env = bb.inspect(tag)["Config"]["Env"]
    assert {"WINPATH=C:\\Users\\app", 'QUOTED=a "b" c', "DOLLAR=$HOME"} <= set(env)
    assert bb.sh(tag, "cat /seen") == 'C:\\Users\\app|a "b" c|$HOME\nsecond-line\n'


def test_healthcheck_exec_form_and_none(bb: Builder, tag: str) -> None:
    bb.build("""
        FROM @BASE@ AS checked
        HEALTHCHECK CMD ["/bin/true", "arg"]
        FROM checked
        HEALTHCHECK NONE
        """, "-t", tag, "--target", "checked")
    assert bb.inspect(tag)["Config"]["Healthcheck"] == {"Test": ["CMD", "/bin/true", "arg"]}
    bb.build(None, "-t", tag)
    assert bb.inspect(tag)["Config"]["Healthcheck"] == {"Test": ["NONE"]}


def test_onbuild_is_stored_then_triggered_in_the_child(bb: Builder, tag: str, tmp_path: Path) -> None:
    parent = tag.replace(":latest", "-parent:latest")
    bb.build("""
        FROM @BASE@
        USER root
        ONBUILD RUN echo triggered > /onbuild-ran
        ONBUILD COPY trigger.txt /trigger.txt
        RUN test ! -e /onbuild-ran && echo parent > /parent
        """, "-t", parent)
    config = bb.config(parent)["config"]
    assert config["OnBuild"] == ["RUN echo triggered > /onbuild-ran", "COPY trigger.txt /trigger.txt"]
    assert bb.sh(parent, "cat /parent; test -e /onbuild-ran || echo not-run") == "parent\nnot-run\n"

    child_context = tmp_path / "child"
    child_context.mkdir()
    bb.write({"trigger.txt": "from the child's context\n"}, under=child_context)
    (child_context / "Containerfile").write_text(f"FROM {parent}\nRUN cat /onbuild-ran /trigger.txt > /child\n")
    bb.build(None, "-t", tag, context=child_context)
    assert bb.sh(tag, "cat /child") == "triggered\nfrom the child's context\n"
    assert not bb.config(tag)["config"].get("OnBuild")


# --- ADD ---------------------------------------------------------------------------


def _tar(files: dict[str, str]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, content in files.items():
            data = content.encode()
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), 0o644, 1_700_000_000
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def test_add_extracts_archives_by_content(bb: Builder, tag: str) -> None:
    bb.write({
        # Names that say nothing (or lie) about the content.
        "gzipped.data": gzip.compress(_tar({"gz/file.txt": "gzip\n"})),
        "bzipped.bin": bz2.compress(_tar({"bz/file.txt": "bzip2\n"})),
        "xzed": lzma.compress(_tar({"xz/file.txt": "xz\n"})),
        "plain.raw": _tar({"plain/file.txt": "plain tar\n"}),
        "not-an-archive.tar.gz": "just text\n",
        "owned.txt": "owned\n",
    })
    bb.build("""
        FROM @BASE@
        ADD gzipped.data bzipped.bin /add/
        ADD xzed plain.raw /add/
        ADD not-an-archive.tar.gz /add/
        ADD --chown=123:456 --chmod=640 owned.txt /owned.txt
        """, "-t", tag)
    out = bb.sh(tag, "cat /add/gz/file.txt /add/bz/file.txt /add/xz/file.txt /add/plain/file.txt "
                     "/add/not-an-archive.tar.gz; ls /add; stat -c '%u:%g %a' /owned.txt", "-u", "0")
    assert _lines(out) == ["gzip", "bzip2", "xz", "plain tar", "just text",
                           "bz", "gz", "not-an-archive.tar.gz", "plain", "xz", "123:456 640"]


# --- COPY --------------------------------------------------------------------------


def test_copy_sources_and_destinations(bb: Builder, tag: str) -> None:
    bb.write({"a.txt": "a\n", "b.txt": "b\n", "c.md": "c\n", "dir/top": "top\n", "dir/sub/x": "x\n"})
    bb.build("""
        FROM @BASE@
        ENV SOMETHING=expanded
        COPY *.txt /glob/
        COPY dir /contents
        COPY a.txt /slash/
        COPY a.txt /noslash
        COPY a.txt b.txt /multi/
        COPY a.txt /deep/er/path/a.txt
        COPY a.txt relative.txt
        COPY b.txt /tmp
        COPY <<EOF /heredoc.txt
        inline $SOMETHING
        EOF
        COPY <<'EOF' /quoted-heredoc.txt
        inline $SOMETHING
        EOF
        """, "-t", tag)
    script = ("ls /glob; echo --; ls /contents /contents/sub; echo --; ls /slash; cat /noslash; ls /multi; "
              "cat /deep/er/path/a.txt /work/relative.txt /tmp/b.txt /heredoc.txt /quoted-heredoc.txt; "
              "stat -c '%u:%g %a' /deep /deep/er /work/relative.txt")
    assert _lines(bb.sh(tag, script)) == [
        "a.txt", "b.txt", "--",
        "/contents:", "sub", "top", "", "/contents/sub:", "x", "--",
        "a.txt", "a", "a.txt", "b.txt",
        "a", "a", "b", "inline expanded", "inline $SOMETHING",
        "0:0 755", "0:0 755", "0:0 644",
    ]


def test_copy_from_stage_index_and_image(bb: Builder, tag: str) -> None:
    bb.build("""
        FROM @BASE@ AS source
        USER root
        RUN echo from-stage > /stage-file
        FROM @BASE@
        COPY --from=source /stage-file /copied/by-name
        COPY --from=0 /stage-file /copied/by-index
        COPY --from=@BASE@ /etc/group /copied/from-image
        """, "-t", tag)
    assert bb.sh(tag, "cat /copied/by-name /copied/by-index /copied/from-image") == \
        "from-stage\nfrom-stage\nroot:x:0:\nnogroup:x:65534:\n"


def test_copy_chown_and_chmod(bb: Builder, tag: str) -> None:
    bb.write({"f.txt": "f\n"})
    # "builder" exists only in the image being built: names are looked up in its /etc/passwd and /etc/group.
    bb.build("""
        FROM @BASE@
        USER root
        RUN echo 'builder:x:4321:8765::/home/builder:/bin/sh' >> /etc/passwd && echo 'builders:x:8765:' >> /etc/group
        USER nobody
        COPY --chown=nobody f.txt /own/by-name
        COPY --chown=nobody:root f.txt /own/by-names
        COPY --chown=builder f.txt /own/image-user
        COPY --chown=root:builders f.txt /own/image-group
        COPY --chown=123:456 f.txt /own/by-ids
        COPY --chown=1234 f.txt /own/by-uid
        COPY --chmod=640 f.txt /mode/octal
        COPY --chmod=u+x,g+w f.txt /mode/symbolic
        COPY --chmod=u=rwx,g=rx,o= f.txt /mode/assigned
        """, "-t", tag)
    out = bb.sh(tag, "cd /own && stat -c '%n %u:%g' by-name by-names image-user image-group by-ids by-uid; "
                     "cd /mode && stat -c '%n %a' octal symbolic assigned", "-u", "0")
    assert _lines(out) == ["by-name 65534:65534", "by-names 65534:0", "image-user 4321:8765", "image-group 0:8765",
                           "by-ids 123:456", "by-uid 1234:1234", "octal 640", "symbolic 764", "assigned 750"]


# --- ARG -----------------------------------------------------------------------------


def test_arg_scopes_defaults_and_build_args(bb: Builder, tag: str) -> None:
    proc = bb.build("""
        ARG GLOBAL=global-default
        ARG GLOBAL_SET=global-default
        ARG ONLY_GLOBAL=not-in-the-stage
        FROM @BASE@
        ARG GLOBAL
        ARG GLOBAL_SET
        ARG DEFAULTED=stage-default
        ARG OVERRIDDEN=not-this
        RUN echo "$GLOBAL $GLOBAL_SET $DEFAULTED $OVERRIDDEN [$ONLY_GLOBAL] [$UNDECLARED]" > /tmp/args
        """, "-t", tag, "--build-arg", "GLOBAL_SET=from-cli", "--build-arg", "OVERRIDDEN=from-cli",
        "--build-arg", "UNDECLARED=nope")
    assert bb.sh(tag, "cat /tmp/args") == "global-default from-cli stage-default from-cli [] []\n"
    # ARGs are not kept in the image.
    env = bb.inspect(tag)["Config"]["Env"]
    assert not [e for e in env if e.split("=")[0] in ("GLOBAL", "GLOBAL_SET", "DEFAULTED", "OVERRIDDEN")]
    assert "UNDECLARED" in proc.stderr  # Docker warns about a build arg no ARG consumed


def test_proxy_build_arg_is_usable_without_arg_and_kept_out_of_history(bb: Builder, tag: str) -> None:
    proxy = "http://127.0.0.1:3128"
    bb.build("""
        FROM @BASE@
        RUN echo "proxy=$HTTP_PROXY" > /tmp/proxy
        """, "-t", tag, "--build-arg", f"HTTP_PROXY={proxy}")
    assert bb.sh(tag, "cat /tmp/proxy") == f"proxy={proxy}\n"
    # The command names $HTTP_PROXY; neither the value nor a `|1 HTTP_PROXY=...` prefix may appear.
    history = [h.get("created_by", "") for h in bb.config(tag)["history"]]
    assert not [h for h in history if "HTTP_PROXY=" in h or "3128" in h]
    assert history[-1].startswith("RUN /bin/sh -c ")
    shown = bb.pybox("history", "--no-trunc", tag, root=bb.root).stdout
    assert "HTTP_PROXY=" not in shown and "3128" not in shown
    assert not [e for e in bb.inspect(tag)["Config"]["Env"] if "PROXY" in e]


def test_platform_args_after_arg(bb: Builder, tag: str) -> None:
    bb.build("""
        FROM @BASE@
        RUN echo "[$TARGETARCH]" > /tmp/before
        ARG TARGETARCH
        ARG TARGETPLATFORM
        ARG TARGETOS
        ARG BUILDPLATFORM
        RUN echo "$TARGETPLATFORM $TARGETOS $TARGETARCH $BUILDPLATFORM" > /tmp/after
        """, "-t", tag)
    assert _lines(bb.sh(tag, "cat /tmp/before /tmp/after")) == [
        "[]", f"{HOST_PLATFORM} linux {_ARCH} {HOST_PLATFORM}"]


# --- multi-stage ---------------------------------------------------------------------

_STAGES = """
    FROM @BASE@ AS broken
    RUN exit 3

    FROM @BASE@ AS used
    RUN echo used > /tmp/used

    FROM @BASE@ AS other
    RUN echo other > /tmp/other

    FROM @BASE@
    COPY --from=used /tmp/used /used
    """


def test_only_the_stages_the_target_needs_are_built(bb: Builder, tag: str) -> None:
    proc = bb.build(_STAGES, "-t", tag)
    assert bb.sh(tag, "cat /used; test -e /tmp/other || echo no-other") == "used\nno-other\n"
    labels = {step.label.split()[0] for step in steps(proc.stderr) if step.label}
    assert labels == {"used", "stage-3"}
    assert "exit 3" not in proc.stderr + proc.stdout


def test_target_builds_that_stage(bb: Builder, tag: str) -> None:
    proc = bb.build(_STAGES, "-t", tag, "--target", "other")
    assert bb.sh(tag, "cat /tmp/other; test -e /used || echo no-used") == "other\nno-used\n"
    assert {step.label.split()[0] for step in steps(proc.stderr) if step.label} == {"other"}
    # The stage that was skipped does fail when it is the target.
    failed = bb.build(None, "--target", "broken", check=False)
    assert failed.returncode == 1 and "exit 3" in failed.stderr


# --- ignore files ----------------------------------------------------------------------

_IGNORE_CONTEXT = {"keep.txt": "k\n", "debug.log": "d\n", "keep.log": "k\n", "secret": "s\n",
                   "sub/deep/secret": "s\n", "sub/ok.txt": "o\n", "a.txt": "a\n", "b.txt": "b\n", "c.txt": "c\n"}
_LIST_COPIED = "cd /ctx && for f in keep.txt debug.log keep.log secret sub/deep/secret sub/ok.txt a.txt b.txt c.txt; " \
               "do if test -e $f; then echo $f; fi; done"


def test_dockerignore_patterns(bb: Builder, tag: str) -> None:
    bb.write(_IGNORE_CONTEXT)
    bb.write({".dockerignore": "*.log\n!keep.log\n**/secret\n# a comment\nc.txt\n"})
    bb.build("FROM @BASE@\nCOPY *.log /logs/\nCOPY . /ctx/\n", "-t", tag)
    # Excluded files are not in the context: a glob does not see them...
    assert _lines(bb.sh(tag, "ls /logs")) == ["keep.log"]
    # ...and neither does a directory copy, at any depth.
    assert _lines(bb.sh(tag, _LIST_COPIED)) == ["keep.txt", "keep.log", "sub/ok.txt", "a.txt", "b.txt"]


def test_containerignore_wins_over_dockerignore(bb: Builder, tag: str) -> None:
    bb.write(_IGNORE_CONTEXT)
    bb.write({".containerignore": "a.txt\n", ".dockerignore": "b.txt\n"})
    bb.build("FROM @BASE@\nCOPY *.txt /ctx/\n", "-t", tag)
    assert _lines(bb.sh(tag, "ls /ctx")) == ["b.txt", "c.txt", "keep.txt"]


def test_ignore_file_beside_the_containerfile_wins(bb: Builder, tag: str) -> None:
    bb.write(_IGNORE_CONTEXT)
    bb.write({".dockerignore": "b.txt\n", "build/app.Containerfile.containerignore": "c.txt\n"})
    bb.containerfile("FROM @BASE@\nCOPY *.txt /ctx/\n", name="build/app.Containerfile")
    bb.build(None, "-t", tag, "-f", str(bb.context / "build/app.Containerfile"))
    assert _lines(bb.sh(tag, "ls /ctx")) == ["a.txt", "b.txt", "keep.txt"]


# --- cache ----------------------------------------------------------------------------

_CACHED_FILE = """
    FROM @BASE@
    USER root
    RUN echo before > /before
    COPY a.txt /a.txt
    ARG USED=1
    RUN echo "after $USED" > /after
    WORKDIR /made
    ENV E=1
    CMD ["cat", "/a.txt"]
    """


def _shown(proc: subprocess.CompletedProcess[str]) -> list[tuple[str, bool]]:
    """(instruction, whether it was CACHED) for each RUN/COPY/WORKDIR step shown, in order."""
    return [(s.text.split()[0], s.cached) for s in steps(proc.stderr)
            if s.text.split()[0] in ("RUN", "COPY", "ADD", "WORKDIR")]


def _cached(proc: subprocess.CompletedProcess[str]) -> list[bool]:
    return [cached for _, cached in _shown(proc)]


def test_rebuild_with_nothing_changed_is_all_cached(fresh: Builder, tag: str) -> None:
    fresh.write({"a.txt": "one\n"})
    first = fresh.build(_CACHED_FILE, "-t", tag)
    assert _shown(first) == [("RUN", False), ("COPY", False), ("RUN", False), ("WORKDIR", False)]
    again = fresh.build(None, "-t", tag)
    assert _cached(again) == [True] * 4
    assert image_id_of(again) == image_id_of(first)
    # A new mtime is not a change.
    os.utime(fresh.context / "a.txt", (1_000_000_000, 1_000_000_000))
    touched = fresh.build(None, "-t", tag)
    assert _cached(touched) == [True] * 4
    assert image_id_of(touched) == image_id_of(first)


def test_changed_file_reruns_from_its_copy(fresh: Builder, tag: str) -> None:
    fresh.write({"a.txt": "one\n"})
    first = image_id_of(fresh.build(_CACHED_FILE, "-t", tag))
    fresh.write({"a.txt": "two\n"})
    changed = fresh.build(None, "-t", tag)
    # The RUN before the COPY is cached, everything from the COPY on runs again.
    assert _cached(changed) == [True, False, False, False]
    assert image_id_of(changed) != first
    assert fresh.run(tag).stdout == "two\n"


def test_no_cache_runs_everything(fresh: Builder, tag: str) -> None:
    fresh.write({"a.txt": "one\n"})
    fresh.build(_CACHED_FILE, "-t", tag)
    again = fresh.build(None, "-t", tag, "--no-cache")
    assert _cached(again) == [False] * 4
    # And --no-cache does not spoil the cache for the next build.
    assert _cached(fresh.build(None, "-t", tag)) == [True] * 4


def test_build_args_in_the_cache_key(fresh: Builder, tag: str) -> None:
    fresh.write({"a.txt": "one\n"})
    fresh.build(_CACHED_FILE, "-t", tag)
    # A build arg no ARG declares reaches no step.
    unused = fresh.build(None, "-t", tag, "--build-arg", "NOT_DECLARED=x")
    assert _cached(unused) == [True] * 4
    # A changed ARG misses from the first RUN after its ARG on; the steps before it are cached.
    used = fresh.build(None, "-t", tag, "--build-arg", "USED=2")
    assert _cached(used) == [True, True, False, False]
    assert fresh.sh(tag, "cat /after") == "after 2\n"


# --- output ------------------------------------------------------------------------------


def test_history_entries(bb: Builder, tag: str) -> None:
    bb.write({"a.txt": "a\n"})
    bb.build("""
        FROM @BASE@
        ARG V=x
        USER root
        RUN echo $V > /v
        COPY a.txt /a.txt
        ENV E=1
        LABEL l=1
        WORKDIR /made
        CMD ["cat", "/a.txt"]
        """, "-t", tag)
    config = bb.config(tag)
    base_entries = len(bb.config(bb.base)["history"])
    added = [(h["created_by"], h.get("empty_layer", False)) for h in config["history"][base_entries:]]
    kinds = [(created_by.split()[0], empty) for created_by, empty in added]
    assert kinds == [("ARG", True), ("USER", True), ("RUN", False), ("COPY", False), ("ENV", True),
                     ("LABEL", True), ("WORKDIR", False), ("CMD", True)]
    run = added[2][0]
    # Docker's form: the build args RUN saw, then the command as the shell got it.
    assert run.startswith("RUN |1 V=x /bin/sh -c echo $V > /v")
    assert "a.txt /a.txt" in added[3][0]
    # Every entry that is not empty_layer has a layer, in order.
    assert sum(not h.get("empty_layer") for h in config["history"]) == len(config["rootfs"]["diff_ids"])
    shown = bb.pybox("history", "--no-trunc", tag, root=bb.root).stdout
    for created_by, _ in added:
        assert created_by in shown


def test_quiet_prints_only_the_image_id(bb: Builder, tag: str) -> None:
    proc = bb.build("""
        FROM @BASE@
        RUN echo loud-output-marker
        """, "-q", "-t", tag)
    image_id = bb.inspect(tag)["Id"]
    assert proc.stdout == image_id + "\n"
    assert "loud-output-marker" not in proc.stderr


def test_two_tags_and_run_output(bb: Builder, tag: str) -> None:
    other = tag.replace(":latest", ":second")
    proc = bb.build("""
        FROM @BASE@
        RUN echo run-output-marker
        """, "-t", tag, "-t", other)
    assert "run-output-marker" in proc.stdout + proc.stderr
    image_id = image_id_of(proc)
    assert bb.inspect(tag)["Id"] == bb.inspect(other)["Id"] == image_id
    assert set(bb.inspect(image_id)["RepoTags"]) == {tag, other}
    rows = json.loads(bb.pybox("images", "--format", "json", root=bb.root).stdout)
    assert {f"{r['Repository']}:{r['Tag']}" for r in rows if r["ID"] == image_id} == {tag, other}


# --- bad input ------------------------------------------------------------------------


def _assert_nothing_half_written(bb: Builder, images_before: set[str]) -> None:
    assert bb.image_ids() == images_before
    assert leftovers(bb.root) == {"mounts": [], "tmp": []}


@pytest.mark.parametrize(
    ("containerfile", "line", "problem"),
    [
        ("FROM @BASE@\nRUN true\nFOO bar\n", 3, "FOO"),
        ("FROM @BASE@\nCOPY --bogus=1 a.txt /a\n", 2, "bogus"),
        ("FROM @BASE@\nRUN true\nRUN <<EOF\necho never ends\n", 3, "heredoc"),
        ("FROM @BASE@\nRUN true\nCOPY missing.txt /x\n", 3, "missing.txt"),
        ("FROM @BASE@\nCOPY a.txt b.txt /not-a-dir\n", 2, "destination|directory"),
        ("FROM @BASE@\nCOPY --from=@REGISTRY@/test/no-such-image:v1 /etc/passwd /p\n", 2, "no-such-image"),
        ("ARG EMPTY\nFROM $EMPTY\nRUN true\n", 2, "blank|empty"),
        ("FROM @BASE@ AS a\nRUN true\nCOPY --from=a /etc/passwd /p\n", 3, "circular|cycl"),
    ],
    ids=["unknown-instruction", "bad-flag", "unterminated-heredoc", "missing-copy-source", "multi-source-dest",
         "unknown-from", "empty-from", "cycle"],
)
def test_bad_input_is_one_line_with_file_and_line(bb: Builder, registry, tag: str, containerfile: str,
                                                  line: int, problem: str) -> None:
    bb.write({"a.txt": "a\n", "b.txt": "b\n"})
    bb.replacements["@REGISTRY@"] = registry.host
    before = bb.image_ids()
    proc = bb.build(containerfile, "-t", tag, check=False)
    assert proc.returncode == 125, proc.stderr
    (error,) = error_lines(proc.stderr)
    assert f"Containerfile:{line}:" in error
    assert re.search(problem, error, re.IGNORECASE)
    _assert_nothing_half_written(bb, before)


def test_unknown_target(bb: Builder, tag: str) -> None:
    before = bb.image_ids()
    proc = bb.build("FROM @BASE@ AS real\nRUN true\n", "-t", tag, "--target", "nope", check=False)
    assert proc.returncode == 125
    (error,) = error_lines(proc.stderr)
    assert "Containerfile" in error and "nope" in error
    _assert_nothing_half_written(bb, before)


def test_failed_run_exits_1_with_command_and_code(bb: Builder, tag: str) -> None:
    before = bb.image_ids()
    proc = bb.build("""
        FROM @BASE@
        RUN echo ok > /tmp/ok
        RUN echo about to fail && exit 7
        RUN echo never
        """, "-t", tag, check=False)
    assert proc.returncode == 1
    (error,) = error_lines(proc.stderr)
    command = "echo about to fail && exit 7"
    assert "Containerfile:3:" in error and command in error
    assert re.search(r"\b7\b", error.replace(command, ""))  # the exit code
    assert "never" not in proc.stdout
    _assert_nothing_half_written(bb, before)


def test_run_whose_command_cannot_start_fails_the_build(bb: Builder, tag: str) -> None:
    before = bb.image_ids()
    proc = bb.build("""
        FROM scratch
        COPY --from=@BASE@ /etc/passwd /etc/passwd
        RUN echo no shell here
        """, "-t", tag, check=False)
    assert proc.returncode == 1
    (error,) = error_lines(proc.stderr)
    assert "Containerfile:3:" in error and "/bin/sh -c echo no shell here" in error and "127" in error
    _assert_nothing_half_written(bb, before)


def test_ctrl_c_stops_a_running_step(bb: Builder, tag: str) -> None:
    """A shell as PID 1 ignores SIGINT; the build kills its container and stops anyway.

    The sleep would last 60 s: communicate's timeout of 30 s fails the test if the build waits for it.
    """
    before = bb.image_ids()
    bb.containerfile("FROM @BASE@\nRUN echo started && sleep 60\nRUN echo never\n")
    argv = [sys.executable, "-I", "-m", "pybox", "--root", str(bb.root), "build", "-t", tag, str(bb.context)]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline() == "started\n"
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130
    assert error_lines(err) == ["pybox: error: interrupted"]
    _assert_nothing_half_written(bb, before)


def test_system_df_shows_the_build_cache(fresh: Builder, tag: str) -> None:
    fresh.build("""
        FROM @BASE@ AS helper
        USER root
        RUN echo only-in-the-cache > /helper
        FROM @BASE@
        COPY --from=helper /helper /copied
        """, "-t", tag)
    rows = {line.split()[0] + (" " + line.split()[1] if line.startswith(("Local", "Build")) else ""): line.split()
            for line in fresh.pybox("system", "df", root=fresh.root).stdout.splitlines()[1:]}
    build_cache = rows["Build Cache"]
    entries = len(list((fresh.root / "cache" / "build").glob("*.json")))
    assert entries > 0 and build_cache[2] == str(entries)
    # The helper stage's RUN layer is in no image: it counts here, not under Images.
    assert build_cache[4] != "0B"
