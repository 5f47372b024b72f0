"""Command line entry point."""


def main() -> None:
    from pybox.cli.app import run

    run()
