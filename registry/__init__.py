"""The distribution protocol: moves manifests and blobs between a registry and the store."""
