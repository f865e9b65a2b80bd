"""The ``attn-export`` verbs that have outgrown ``cli.py``: one module per verb, plus ``common``."""
