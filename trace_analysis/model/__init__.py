"""One trace as the analyses see it: its spans read (``spans``), linked into a tree with clock
skew corrected (``tree``), and what the analysis produces from it (``results``)."""
