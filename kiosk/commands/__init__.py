"""Subcommands of the `kiosk` command line."""
