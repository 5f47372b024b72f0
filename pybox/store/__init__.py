"""The on-disk store: an OCI image layout plus unpacked layers (DESIGN section 3)."""

from pybox.store.store import Store

__all__ = ["Store"]
