"""Training of the learned sync models (``avsync train``). Imports torch; not imported by ``import avsync``."""
