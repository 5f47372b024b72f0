"""Helpers shared by pybox's tests; made importable by tests/conftest.py."""
