"""Builds images from Containerfiles with the registry client and the runtime."""
