"""Validators for intake values and PCM16 audio arithmetic; import the submodules directly."""
