"""The experiment job (`blt experiment`): sweeps of corpora × models × segmenters × parameter grids. It owns the
experiment configs with validation, `--set` and grid expansion (`config`; including the surprisal-budget oracle, an
upper bound that runs only here), running a sweep with cached inputs and an optional second grading model,
resumable atomic cells and worker processes (`run`), the output directory's rules (`outdir`: what proves it is
blt's, what `--force` may remove, damaged cells) and the report: tidy tables, report.md, trade-off plots (`report`).

May import the top-level modules, `blt.bytelm`, `blt.patching`, `blt.segment`, `blt.metrics`, `blt.report` and
`blt.compare` (its segmenters and measurements); see docs/architecture.md.
"""
