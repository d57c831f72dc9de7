"""The ``mie`` command line (private: its Python names are not API)."""
