"""The ``attn-export`` verbs: one module per verb, plus ``common`` (what they share)."""
