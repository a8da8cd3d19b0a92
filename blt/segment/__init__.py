"""Bytes → units behind one interface (a segmenter returns the start offsets of its units): the entropy `Patcher`
(byte-model scores + patching rules, `patcher`), trainable tokenisers (byte-level BPE, SentencePiece) and their
cache of trained tokenisers (`tokenizers`), pretrained tokenisers (tiktoken, any Hugging Face or GGUF tokenizer,
`pretrained`), corpus-scale patching into Parquet (`corpus`), and patchers kept on disk
(`saved`). This is the `scores → patches → units` step.

May import the top-level modules, `blt.bytelm` and `blt.patching`; see docs/architecture.md.
"""
