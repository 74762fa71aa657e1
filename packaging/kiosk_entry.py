"""Entry point of the PyInstaller bundles."""

from kiosk.cli import main

raise SystemExit(main())
