"""Command-line plumbing shared by the tools in tools/."""

import argparse


def argument_parser(doc: str) -> argparse.ArgumentParser:
    """A parser whose description is the module docstring's first paragraph and whose epilog is the rest."""
    first, _, rest = doc.partition("\n\n")
    return argparse.ArgumentParser(
        description=first,
        epilog=rest,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
