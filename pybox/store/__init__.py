"""The on-disk store: an OCI image layout plus unpacked layers."""
