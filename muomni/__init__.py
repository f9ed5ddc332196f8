"""μOmni, notebook first: a 25.65M-parameter Thinker-Talker omni model built and trained from scratch in five stages

Modules:

- `muomni.audio`: AuT-Tiny: log-mel frames, a strided convolution front end and four transformer blocks, trained with CTC to spell what it hears. Measured on voices *and* sentences it never heard.
- `muomni.cli`: One `muomni` command for every Quick Start line of the book: train each stage, run the whole pipeline, chat with the model, export it, and benchmark.
- `muomni.data`: Offline data for every stage: a Shakespeare corpus, speech synthesised with espeak-ng, procedural shapes, handwritten digits, loaders for real datasets, and the one log-mel definition every stage shares.
- `muomni.infer`: Chat with the trained μOmni (one question or a whole conversation, with pictures and speech), hear it speak, export it as one safetensors file, and try it in a notebook chat panel.
- `muomni.omni`: Projectors from the vision and audio encoders into the Thinker, multimodal supervised fine-tuning on real targets, and the `Omni` model that answers questions about pictures and speech and speaks its answers.
- `muomni.thinker`: A byte-level BPE tokenizer and a small decoder-only language model (the *Thinker*), trained live on Shakespeare with held-out plays for validation.
- `muomni.vision`: Patch embedding, a CLS token and four transformer blocks turn a picture into 128-dimensional tokens; trained on procedural shapes and real handwritten digits, scored on images it never saw."""

__version__ = "0.1.0"
