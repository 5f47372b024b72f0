"""`pybox build` against `buildah bud --layers` on the same Containerfile and context.

Both build on the session registry's umoci-made busybox; the root
filesystems (umoci's unpack of each tool's OCI export: pybox's store is a
layout umoci reads) must agree entry by entry in type, mode, owner, size,
content and link target, and the image configs in every field a user sets.

Allowed differences, each buildah's own: the empty mount points buildah's
RUN leaves in its layers, and empty-vs-absent forms of config fields
(``"Volumes": {}`` against no Volumes). buildah creates a WORKDIR only when a
later step writes to it (Docker creates it at once), so here a COPY follows
each WORKDIR. Heredocs are left out: buildah 1.28 has none (test_build.py
covers them against BuildKit's documented behaviour).
"""

from __future__ import annotations

import gzip
import io
import json
import tarfile
from pathlib import Path

import pytest

from support.buildah import RUN_MOUNT_POINTS, Buildah, require_buildah
from support.mounts import mounts_under
from support.tools import run
from support.tree import Entry, diff_trees, snapshot

pytestmark = pytest.mark.root

_CONFIG_FIELDS = ("Env", "Cmd", "Entrypoint", "User", "WorkingDir", "Labels", "ExposedPorts", "Volumes",
                  "StopSignal", "Healthcheck", "OnBuild", "Shell")

EVERYTHING = """\
ARG BASE
FROM $BASE
ARG VERSION=1.0
ENV APP=/opt/app PATH=/opt/app/bin:/bin
USER 0
WORKDIR $APP
COPY one.txt ./
COPY --chown=65534:65534 files/ ./files/
COPY --chmod=0750 script.sh bin/
COPY *.txt notes/
ADD archive.tar.gz /opt/extracted/
ADD plain.tar /opt/plain/
ADD fake.gz /opt/raw/
RUN mkdir -p /var/data && echo "$VERSION" > /var/data/version && chown 65534 /var/data/version \\
    && ln -s /var/data/version /opt/app/version-link
RUN rm -rf /opt/plain/sub && chmod 700 /opt/extracted
RUN mkdir -p /shared/sub && chmod 1777 /shared && chown 65534:65534 /shared/sub && chmod 700 /shared/sub
COPY one.txt /shared/sub/
WORKDIR /shared/sub/w
COPY two.txt ./
WORKDIR sub/dir
COPY two.txt ./
LABEL org.example.a="x y" b=c
EXPOSE 8080 53/udp
VOLUME ["/data"]
STOPSIGNAL SIGQUIT
HEALTHCHECK --interval=10s --timeout=2s --retries=2 CMD true
SHELL ["/bin/sh", "-e", "-c"]
ONBUILD RUN echo child
USER nobody
ENTRYPOINT ["/bin/sh", "-c"]
CMD ["echo hello"]
"""

MULTI_STAGE = """\
ARG BASE
FROM $BASE AS builder
USER 0
RUN mkdir /out && echo built > /out/artifact && chmod 600 /out/artifact && ln -s artifact /out/link
FROM $BASE AS final
COPY --from=builder /out /srv
COPY --from=0 /out/artifact /srv/again
ENV STAGE=final
FROM final AS extra
ENV STAGE=extra
"""

ESCAPE = """\
# escape=`
ARG BASE
FROM $BASE
USER 0
RUN mkdir -p /e && `
    echo joined > /e/line
CMD ["cat", "/e/line"]
"""


def _tar(members: dict[str, bytes | None]) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tf:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.mtime = 1_600_000_000
            if data is None:
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                tf.addfile(info)
            else:
                info.size, info.mode = len(data), 0o640
                tf.addfile(info, io.BytesIO(data))
    return out.getvalue()


def _context(tmp_path: Path, containerfile: str) -> Path:
    ctx = tmp_path / "context"
    (ctx / "files" / "deep").mkdir(parents=True)
    (ctx / "Containerfile").write_text(containerfile)
    (ctx / "files" / "a").write_text("a\n")
    (ctx / "files" / "deep" / "b").write_text("b\n")
    (ctx / "files" / "deep" / "b").chmod(0o600)
    (ctx / "script.sh").write_text("#!/bin/sh\necho script\n")
    (ctx / "one.txt").write_text("1\n")
    (ctx / "two.txt").write_text("2\n")
    (ctx / "archive.tar.gz").write_bytes(gzip.compress(_tar({"x/": None, "x/y": b"extracted\n"}), mtime=0))
    (ctx / "plain.tar").write_bytes(_tar({"sub/": None, "sub/gone": b"gone\n", "kept": b"kept\n"}))
    (ctx / "fake.gz").write_bytes(b"not gzip at all\n")
    return ctx


def _pybox_build(pybox, root: Path, ctx: Path, tag: str, *args: str) -> tuple[dict, Path]:
    pybox("build", "-q", "-t", tag, *args, str(ctx), root=root)
    name = f"docker.io/library/{tag}:latest"
    inspected = json.loads(pybox("inspect", name, root=root).stdout)
    config = (inspected[0] if isinstance(inspected, list) else inspected)["Config"]
    bundle = root.parent / f"bundle-{tag}"
    run(["umoci", "unpack", "--image", f"{root}:{name}", bundle], timeout=120)
    return config, bundle / "rootfs"


def _comparable(config: dict) -> dict:
    # Empty and absent mean the same to a container: Docker's config prints both.
    return {k: config.get(k) or None for k in _CONFIG_FIELDS}


def _without_run_mount_points(tree: dict[str, Entry], other: dict[str, Entry]) -> dict[str, Entry]:
    """buildah leaves its empty RUN mount points in the image; pybox removes them as BuildKit does."""
    out = dict(tree)
    for point in RUN_MOUNT_POINTS:
        entry = out.get(point)
        if point not in other and entry is not None and entry.size == 0:
            for path in [p for p in out if p == point or p.startswith(point + "/")]:
                del out[path]
    return out


@pytest.mark.parametrize(
    ("containerfile", "args"),
    [(EVERYTHING, ()), (MULTI_STAGE, ("--target", "final")), (ESCAPE, ())],
    ids=["every-instruction", "multi-stage-target", "escape-directive"],
)
def test_same_filesystem_and_config_as_buildah(registry, pybox, tmp_path: Path, containerfile: str,
                                               args: tuple[str, ...]) -> None:
    require_buildah()
    base = registry.images["gzip"].ref
    ctx = _context(tmp_path, containerfile)
    buildah = Buildah(tmp_path / "buildah")
    store = tmp_path / "store"
    try:
        target = args[1] if args else None
        theirs = buildah.build(ctx, build_args=(f"BASE={base}",), target=target)
        their_root = theirs.unpack(tmp_path / "bundle-buildah")
        config, our_root = _pybox_build(pybox, store, ctx, "cmp", "--build-arg", f"BASE={base}", *args)
        ours, expected = snapshot(our_root), snapshot(their_root)
        expected = _without_run_mount_points(expected, ours)
        differences = diff_trees(expected, ours)
        assert differences == [], "\n".join(differences)
        assert _comparable(config) == _comparable(theirs.config["config"])
    finally:
        buildah.cleanup()
    assert mounts_under(tmp_path) == []


def test_buildah_reads_what_pybox_built(registry, pybox, tmp_path: Path) -> None:
    """The other direction: buildah builds FROM an image pybox built and pushed."""
    require_buildah()
    base = registry.images["gzip"].ref
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Containerfile").write_text(f"FROM {base}\nUSER 0\nRUN echo from-pybox > /marker\nCMD [\"cat\", \"/marker\"]\n")
    store = tmp_path / "store"
    pybox("build", "-q", "-t", "handoff", str(ctx), root=store)
    pushed = tmp_path / "layout"
    run(["skopeo", "copy", "-q", f"oci:{store}:docker.io/library/handoff:latest", f"oci:{pushed}:handoff"],
        timeout=120)
    run(["umoci", "unpack", "--image", f"{pushed}:handoff", tmp_path / "bundle"], timeout=120)
    assert (tmp_path / "bundle" / "rootfs" / "marker").read_text() == "from-pybox\n"
