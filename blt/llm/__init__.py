"""The LLM job (`blt llm`): next-token entropy of full language models. It owns the scorers (Hugging Face models,
GGUF files, the byte model) with bounded memory and their aggregates (`scorers`), API logprobs JSON (OpenAI, vLLM)
→ entropy bounds from the top-k (`logprobs`), per-token records, entropix regions and line/sentence means
(`tokens`), the shaded views, JSONL/CSV, HTML and entropy–varentropy map they feed (`views`), the report: choosing
the scorer, side-by-side tables, report.md and plots (`report`), and patches over token streams
(`token_patches`). The names users imported from the old `blt.llm` module are re-exported here.

May import the top-level modules, `blt.bytelm`, `blt.patching`, `blt.segment` and `blt.report`; see
docs/architecture.md.
"""

from __future__ import annotations

from blt.llm.scorers import (
    DTYPES,
    LLM_EXTRA,
    LOGIT_ELEMENTS,
    MAX_DEFAULT_CONTEXT,
    RAW_NOTE,
    HFModel,
    TokenScores,
    aggregate,
    concat_scores,
    generate_hf,
    load_hf,
    score_byte_model,
    score_hf,
    token_pieces,
)
from blt.llm.tokens import REGIONS, span_records, token_records, token_regions, write_token_records

__all__ = [
    "DTYPES",
    "LLM_EXTRA",
    "LOGIT_ELEMENTS",
    "MAX_DEFAULT_CONTEXT",
    "RAW_NOTE",
    "REGIONS",
    "HFModel",
    "TokenScores",
    "aggregate",
    "concat_scores",
    "generate_hf",
    "load_hf",
    "score_byte_model",
    "score_hf",
    "span_records",
    "token_pieces",
    "token_records",
    "token_regions",
    "write_token_records",
]
