"""The pages of the app; each module exposes ``render()``."""
