"""People: consent, guided capture and its quality checks, the people store, the wizard."""
