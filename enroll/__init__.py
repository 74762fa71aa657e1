"""People: consent, guided capture, the store of enrolled people and their photos, retention."""
