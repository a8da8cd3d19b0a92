"""The downstream job (`blt downstream`): does a segmentation help a language model? One patch-level LM (BLT's
shape at small scale: local byte encoder, unit pooling, latent transformer, local byte decoder) per corpus ×
segmentation × seed, the same model for every segmentation but the latent width (sized to matched FLOPs per byte),
trained with Lightning and scored in bits per byte on the same held-out bytes. It owns the model and its FLOPs
(`model`), unit masks, training windows, the Lightning module and scoring (`train`), configs (`config`), running a
resumable experiment (`run`) and its tables, report and plot (`report`).

May import the top-level modules, `blt.bytelm`, `blt.patching`, `blt.segment`, `blt.compare` (its corpus split and
segmenters), `blt.experiments` (its config parsing) and `blt.report`; see docs/architecture.md.
"""
