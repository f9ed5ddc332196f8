"""μOmni, notebook first: a 25.65M-parameter Thinker-Talker omni model built and trained from scratch in five stages

Modules:

- `muomni.data`: Offline data for every stage: a Shakespeare corpus, speech synthesised with espeak-ng, procedural shapes, handwritten digits, loaders for real datasets, and the one log-mel definition every stage shares."""

__version__ = "0.1.0"
