"""Running `pybox build` in tests, and reading back what a user would look at.

A `Builder` works on one store and one context directory: it writes the
context's files, runs `pybox build`, and runs or inspects what was built.
`building()` wraps it with the checks every build test ends with: nothing
mounted under the store, no container cgroup, no container record and
nothing in the store's tmp/ is left behind.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import textwrap
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from support.containers import assert_no_new_cgroups, container_cgroups
from support.mounts import mounts_under

__all__ = ["BASE_PLACEHOLDER", "Builder", "Step", "building", "error_lines", "image_id_of", "leftovers", "steps"]

# What `FROM @BASE@` in a Containerfile given to Builder.build becomes.
BASE_PLACEHOLDER = "@BASE@"

_STEP = re.compile(r"#(\d+) (?:\[([^\]]*)\] )?(.*)")


@dataclass
class Step:
    """One step of the plain progress output: `#3 [stage-0 2/4] RUN make` and how it ended."""

    number: int
    label: str
    text: str
    status: str = ""  # "CACHED", "DONE 0.1s", or "" if it never ended (a failure)

    @property
    def cached(self) -> bool:
        return self.status == "CACHED"


def steps(stderr: str) -> list[Step]:
    """The numbered steps of a build's stderr, in order, with their final status."""
    found: dict[int, Step] = {}
    for line in stderr.splitlines():
        match = _STEP.fullmatch(line)
        if match is None:
            continue
        number, label, text = int(match.group(1)), match.group(2), match.group(3)
        if number not in found:
            found[number] = Step(number=number, label=label or "", text=text)
        elif text == "CACHED" or text.startswith("DONE"):
            found[number].status = text
    return list(found.values())


def error_lines(stderr: str) -> list[str]:
    """pybox's error lines (`pybox: error: ...`) in stderr."""
    return [line for line in stderr.splitlines() if line.startswith("pybox: error:")]


def leftovers(root: Path) -> dict[str, list[str]]:
    """What a finished build may not leave in store ``root``: mounts and tmp/ entries."""
    tmp = root / "tmp"
    return {
        "mounts": mounts_under(root),
        "tmp": sorted(os.listdir(tmp)) if tmp.is_dir() else [],
    }


@dataclass
class Builder:
    """Builds in store ``root`` from the context directory ``context``; ``base`` is the busybox ref."""

    pybox: Callable[..., subprocess.CompletedProcess[str]]
    root: Path
    base: str
    context: Path
    replacements: dict[str, str] = field(default_factory=dict)

    def write(self, files: Mapping[str, str | bytes], *, mode: int = 0o644, under: Path | None = None) -> None:
        """Write ``files`` (relative path -> content) into the context, each with ``mode``."""
        top = under or self.context
        for name, content in files.items():
            path = top / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(content.encode() if isinstance(content, str) else content)
            os.chmod(path, mode)

    def containerfile(self, text: str, name: str = "Containerfile") -> Path:
        """Write a Containerfile (dedented, ``@BASE@`` replaced) into the context."""
        text = textwrap.dedent(text).lstrip("\n").replace(BASE_PLACEHOLDER, self.base)
        for old, new in self.replacements.items():
            text = text.replace(old, new)
        path = self.context / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        return path

    def build(self, text: str | None = None, *args: str, check: bool = True,
              context: Path | None = None, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        """`pybox build ARGS CONTEXT`, after writing ``text`` as the context's Containerfile."""
        if text is not None:
            self.containerfile(text)
        return self.pybox("build", *args, str(context or self.context), root=self.root, check=check, env=env)

    def build_id(self, text: str | None = None, *args: str, **kw: Any) -> str:
        """Build and return the image ID (the last line on stdout)."""
        proc = self.build(text, *args, **kw)
        return image_id_of(proc)

    def run(self, image: str, *command: str, options: tuple[str, ...] = (), check: bool = True
            ) -> subprocess.CompletedProcess[str]:
        """`pybox run --rm OPTIONS IMAGE COMMAND...`."""
        return self.pybox("run", "--rm", *options, image, *command, root=self.root, check=check)

    def sh(self, image: str, script: str, *options: str) -> str:
        """The stdout of ``sh -c script`` in a container of ``image``."""
        return self.run(image, "sh", "-c", script, options=options).stdout

    def inspect(self, image: str) -> dict[str, Any]:
        (doc,) = json.loads(self.pybox("inspect", "--type", "image", image, root=self.root).stdout)
        return doc

    def config(self, image: str) -> dict[str, Any]:
        """The image's OCI config blob, as `skopeo inspect --config` would show it."""
        image_id = self.inspect(image)["Id"]
        algorithm, hexdigest = image_id.split(":", 1)
        return json.loads((self.root / "blobs" / algorithm / hexdigest).read_bytes())

    def image_ids(self) -> set[str]:
        """Every image in the store, tagged or not."""
        rows = json.loads(self.pybox("images", "--format", "json", root=self.root).stdout)
        return {row["ID"] for row in rows}


def image_id_of(proc: subprocess.CompletedProcess[str]) -> str:
    lines = proc.stdout.splitlines()
    assert lines, f"no image ID on stdout\nstderr:\n{proc.stderr}"
    image_id = lines[-1]
    assert re.fullmatch(r"sha256:[0-9a-f]{64}", image_id), f"not an image ID: {image_id!r}"
    return image_id


@contextmanager
def building(pybox: Callable, root: Path, base: str, context: Path) -> Iterator[Builder]:
    """A Builder on ``root``; afterwards no mount, cgroup, container record or tmp/ entry may remain."""
    context.mkdir(parents=True, exist_ok=True)
    records = set(os.listdir(root / "containers"))
    cgroups = set(container_cgroups())
    yield Builder(pybox=pybox, root=root, base=base, context=context)
    assert leftovers(root) == {"mounts": [], "tmp": []}
    assert_no_new_cgroups(cgroups)
    assert set(os.listdir(root / "containers")) == records
