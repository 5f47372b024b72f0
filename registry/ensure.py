"""The image ``pybox run`` asked for, pulled first when ``--pull`` says so.

The pull machinery (and ``requests`` with it) is imported only when a pull
actually happens: running an image that is already in the store stays quick.
"""

from __future__ import annotations

from pybox.errors import ImageNotFound, UsageError
from pybox.store import Store
from pybox.store.images import Image

__all__ = ["ensure_image"]

_POLICIES = ("missing", "always", "never")


def ensure_image(store: Store, text: str, *, policy: str = "missing", platform: str | None = None) -> Image:
    if policy not in _POLICIES:
        raise UsageError(f"invalid --pull {policy!r}: expected missing, always or never")
    if policy != "always":
        try:
            return store.images.resolve(text)
        except ImageNotFound:
            if policy == "never":
                raise ImageNotFound(f"image {text!r} is not in the store and --pull never forbids pulling it") from None
    from pybox.image import Platform
    from pybox.registry.progress import SilentProgress
    from pybox.registry.pull import PullOptions, pull

    options = PullOptions(platform=Platform.parse(platform) if platform else None)
    result = pull(store, text, options, SilentProgress())
    return store.images.resolve(result.image_id)
