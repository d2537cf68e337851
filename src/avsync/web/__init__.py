"""``avsync serve``: a local web page over the public API (FastAPI, the ``web`` extra).

Never imported by ``import avsync``.
"""
