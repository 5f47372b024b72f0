"""TLS: the system's CAs plus a registry's own CA from certs.d, as Docker and Podman read them."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from support.certs import make_server_cert
from support.registry import Registry
from support.skip import require_root
from support.tools import run


@pytest.fixture(scope="module")
def tls_registry(registry, tmp_path_factory) -> Iterator[tuple[Registry, Path]]:
    require_root()
    work = tmp_path_factory.mktemp("tls-registry")
    cert = make_server_cert(work / "certs")
    reg = Registry(work / "registry", tls=(cert.certificate, cert.key))
    reg.start()
    try:
        image = registry.images["gzip"]
        run(["skopeo", "--insecure-policy", "copy", "--quiet", "--dest-cert-dir", str(cert.ca.parent),
             f"oci:{image.layout}:{image.tag}", f"docker://{reg.host}/tls/busybox:v1"], timeout=120)
        yield reg, cert.ca
    finally:
        reg.stop()


@pytest.mark.parametrize("base", ["/etc/containers/certs.d", "/etc/docker/certs.d"])
def test_registry_ca_from_certs_d(tls_registry, pybox, base: str) -> None:
    reg, ca = tls_registry
    ref = f"{reg.host}/tls/busybox:v1"
    refused = pybox("pull", ref, check=False)
    assert refused.returncode == 125
    assert f"TLS handshake with {reg.host} failed" in refused.stderr and "certificate verify failed" in refused.stderr
    directory = Path(base) / reg.host
    created = not Path(base).exists()
    directory.mkdir(parents=True)
    try:
        shutil.copy(ca, directory / "ca.crt")
        pybox("pull", "-q", ref)
    finally:
        shutil.rmtree(Path(base) if created else directory)
    assert not directory.exists()


def test_tls_verify_false_skips_the_check(tls_registry, pybox) -> None:
    reg, _ = tls_registry
    pybox("pull", "-q", "--tls-verify=false", f"{reg.host}/tls/busybox:v1")
