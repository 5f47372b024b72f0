"""Self-test of support.buildah, the reference builder `pybox build` is compared with.

buildah pulls the session registry's umoci-made busybox over plain HTTP on
loopback, builds in its private storage, and its cleanup leaves no storage,
no mount, no runc container and no cgroup behind. Nothing here runs pybox.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from support.buildah import RUN_MOUNT_POINTS, Buildah, buildah_build, buildah_cleanup, require_buildah
from support.mounts import mounts_under

pytestmark = pytest.mark.root


def _context(tmp_path: Path, containerfile: str) -> Path:
    context = tmp_path / "context"
    context.mkdir()
    (context / "Containerfile").write_text(containerfile)
    return context


def _cgroups_named(prefix: str) -> list[Path]:
    # runc names a container's cgroup after its id when the spec has no path;
    # buildah's RUN containers are `buildah-buildah<n>`.
    return [p for p in Path("/sys/fs/cgroup").glob(f"*/{prefix}*") if p.is_dir()]


def test_build_run_env_then_cleanup(registry, tmp_path: Path) -> None:
    require_buildah()
    # The seeded busybox runs as nobody, who may not write /x: USER 0 first.
    context = _context(tmp_path, f"FROM {registry.images['gzip'].ref}\nUSER 0\nRUN echo hi > /x\nENV A=b\n")
    workdir = tmp_path / "buildah"
    try:
        image = buildah_build(context, workdir=workdir)
        rootfs = image.unpack(tmp_path / "bundle")
        assert (rootfs / "x").read_text() == "hi\n"
        assert (rootfs / "bin/busybox").is_file()
        # buildah 1.28 leaves its RUN mount points in the layer (network none:
        # no /etc/hosts, /etc/resolv.conf); comparisons must allow for them.
        present = {p for p in RUN_MOUNT_POINTS if os.path.lexists(rootfs / p.lstrip("/"))}
        assert present == {"/dev", "/proc", "/run", "/sys", "/etc/hostname"}
        assert (rootfs / "etc/hostname").stat().st_size == 0
        config = image.config["config"]
        assert "A=b" in config["Env"]
        assert config["WorkingDir"] == "/work"  # kept from the base image
        assert "io.buildah.version" not in (config.get("Labels") or {})
        assert image.manifest["config"]["digest"] == "sha256:" + image.image_id
        assert len(image.config["rootfs"]["diff_ids"]) == 2  # busybox + RUN
        # A second build in the same workdir is served from buildah's cache.
        again = buildah_build(context, workdir=workdir)
        assert again.image_id == image.image_id
        assert "Using cache" in again.log
    finally:
        buildah_cleanup(workdir)
    assert mounts_under(tmp_path) == []
    assert not (workdir / "root").exists() and not (workdir / "run").exists()


def test_docker_format_keeps_healthcheck_shell_onbuild(registry, tmp_path: Path) -> None:
    require_buildah()
    context = _context(tmp_path, (
        f"FROM {registry.images['gzip'].ref}\n"
        'SHELL ["/bin/sh", "-ec"]\n'
        "HEALTHCHECK --interval=5s CMD true\n"
        "ONBUILD RUN echo child\n"
    ))
    workdir = tmp_path / "buildah"
    try:
        config = buildah_build(context, workdir=workdir).config["config"]
    finally:
        buildah_cleanup(workdir)
    assert config["Shell"] == ["/bin/sh", "-ec"]
    assert config["Healthcheck"] == {"Test": ["CMD-SHELL", "true"], "Interval": 5_000_000_000}
    assert config["OnBuild"] == ["RUN echo child"]


def test_cleanup_after_a_build_that_timed_out(registry, tmp_path: Path) -> None:
    require_buildah()
    context = _context(tmp_path, f"FROM {registry.images['gzip'].ref}\nRUN sleep 300\n")
    workdir = tmp_path / "buildah"
    buildah = Buildah(workdir)
    before = set(_cgroups_named("buildah-"))
    try:
        with pytest.raises(AssertionError, match="timed out"):
            buildah.build(context, timeout=5)
    finally:
        buildah.cleanup()
    # The RUN container outlived buildah (runc makes it its own session);
    # the cleanup found it in the runc state under workdir and deleted it.
    assert not buildah.runc_root.exists()
    assert set(_cgroups_named("buildah-")) <= before
    assert mounts_under(tmp_path) == []
