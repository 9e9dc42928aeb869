"""Real third-party software, unchanged, on anyiotls (see ``redirect.py``)."""
