"""The ``centersmooth`` command. ``commands.py`` builds the parser and runs the subcommands;
``attack.py`` and ``demo.py`` hold the two that have a module of their own. Heavy libraries are
imported by the subcommand that needs them, so ``centersmooth --help`` starts without torch."""

from .commands import main

__all__ = ["main"]
