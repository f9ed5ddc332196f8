"""μOmni, notebook first: a 25.65M-parameter Thinker-Talker omni model built and trained from scratch in five stages"""

__version__ = "0.1.0"
