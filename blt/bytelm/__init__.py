"""The byte language model, from corpus to scores: the model itself (`model`, a plain torch `nn.Module`), corpora →
documents (`sources`), the deterministic train/validation split and `uint8` memmap caches (`data`), Lightning
training (`train`), model directories and safe loading (`checkpoint`), logits → per-byte entropy and surprisal with
batched, windowed scoring (`entropy`), the on-disk cache of a corpus's scores (`score_cache`), corpus-scale scoring
through Lightning's predict loop (`corpus`), scoring while learning (`online`), and Meta's released BLT entropy
model as a byte model (`hf_blt`). This is the `text → scores` end of the data path.

May import the top-level modules only (`blt.errors`, `blt.config`, `blt.files`, `blt.cache`); see
docs/architecture.md.
"""
