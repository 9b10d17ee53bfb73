"""Nox sessions: ``nox -s tests``, ``nox -s lint``, ``nox -s docs`` (the defaults) and more."""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import nox

nox.needs_version = ">=2024.10.9"
nox.options.sessions = ["lint", "tests", "docs"]
nox.options.default_venv_backend = "virtualenv"  # pip finds the local torch build; uv does not
nox.options.reuse_venv = "yes"

ROOT = Path(__file__).resolve().parent
CONSTRAINTS = ROOT / "constraints.txt"
PYPROJECT = nox.project.load_toml(ROOT / "pyproject.toml")
DOCS = ROOT / "docs"
BUILD = DOCS / "_build"
EDITIONS = ("en", "zh")


def install(session: nox.Session, *groups: str, package: bool = True) -> None:
    """Install the package (editable) and dependency groups, pinned by the constraints file.

    A stamp in the virtualenv records what was installed, so a rerun with
    nothing changed skips pip entirely.
    """
    requirements = nox.project.dependency_groups(PYPROJECT, *groups)
    digest = hashlib.sha256()
    for path in (CONSTRAINTS, ROOT / "pyproject.toml"):
        digest.update(path.read_bytes())
    digest.update(" ".join([*requirements, str(package)]).encode())
    key = digest.hexdigest()
    stamp = Path(session.virtualenv.location) / ".attention_book-installed"
    if stamp.is_file() and stamp.read_text() == key:
        session.log("Dependencies up to date (constraints.txt and pyproject.toml unchanged).")
        return
    session.install("-c", str(CONSTRAINTS), *requirements, *(["-e", "."] if package else []))
    stamp.write_text(key)


@nox.session
def tests(session: nox.Session) -> None:
    """Run the test suite with branch coverage of attention_book."""
    install(session, "tests")
    session.run(
        "pytest",
        "--cov=attention_book",
        "--cov-branch",
        "--cov-report=term-missing:skip-covered",
        "--cov-fail-under=95",
        "--ignore=tests/browser",  # needs a built site: nox -s browser
        "--ignore=tests/notebooks",  # needs a built site: nox -s notebooks
        *session.posargs,
        # small tensors: one thread each is as fast, and never oversubscribes a busy machine
        env={"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"},
    )


@nox.session
def lint(session: nox.Session) -> None:
    """Check style, formatting and types: ruff check, ruff format --check, mypy."""
    install(session, "lint")
    session.run("ruff", "check", ".", *session.posargs)
    session.run("ruff", "format", "--check", ".")
    session.run("mypy")


def _editions(session: nox.Session) -> tuple[list[str], list[str], list[str]]:
    """Split ``--lang en|zh`` and ``--jobs N`` from the arguments passed on to sphinx-build."""
    args = list(session.posargs)
    langs = list(EDITIONS)
    jobs: list[str] = []
    if "--lang" in args:
        i = args.index("--lang")
        if i + 1 >= len(args) or args[i + 1] not in EDITIONS:
            session.error(f"--lang expects one of {', '.join(EDITIONS)}")
        langs = [args[i + 1]]
        del args[i : i + 2]
    if "--jobs" in args:
        i = args.index("--jobs")
        if i + 1 >= len(args) or not args[i + 1].isdigit() or int(args[i + 1]) < 1:
            session.error("--jobs expects a positive number of processes")
        jobs = ["--jobs", args[i + 1]]
        del args[i : i + 2]
    return langs, args, jobs


@nox.session
def docs(session: nox.Session) -> None:
    """Execute every page (in parallel), then build both editions (``-- --lang zh`` for one).

    ``-- --jobs 1`` executes one page at a time; by default one process per core.
    """
    install(session, "docs")
    langs, args, jobs = _editions(session)
    # The device kind names the execution cache; found once, it spares each process torch.
    found = session.run("python", str(DOCS / "execute_pages.py"), "--device-kind", silent=True)
    env = {"ATTENTION_BOOK_DEVICE_KIND": str(found).strip().splitlines()[-1]}
    session.log(f"Executing on: {env['ATTENTION_BOOK_DEVICE_KIND']}")
    session.run("python", str(DOCS / "execute_pages.py"), *jobs, env=env)
    for lang in langs:
        session.run(
            "sphinx-build",
            "-b", "html",
            "-W", "--keep-going", "-n",
            "-d", str(BUILD / "doctrees" / lang),
            str(DOCS / lang),
            str(BUILD / "html" / lang),
            *args,
            env=env,
        )  # fmt: skip
    for page in (DOCS / "_root").iterdir():
        shutil.copy2(page, BUILD / "html" / page.name)
    session.log(f"Site built: open {BUILD / 'html' / 'index.html'}")


@nox.session(name="docs-live", default=False)
def docs_live(session: nox.Session) -> None:
    """Serve one edition with sphinx-autobuild, rebuilding on save (``-- --lang zh``)."""
    install(session, "docs-live")
    langs, args, _ = _editions(session)
    lang = langs[0]
    session.run(
        "sphinx-autobuild",
        "-d", str(BUILD / "doctrees" / lang),
        "--watch", str(ROOT / "attention_book"),
        "--watch", str(DOCS / "_static"),
        "--watch", str(DOCS / "_templates"),
        str(DOCS / lang),
        str(BUILD / "html" / lang),
        *args,
    )  # fmt: skip


@nox.session(default=False)
def bench(session: nox.Session) -> None:
    """Time our attention against PyTorch's, then peak memory and time against L (CPU)."""
    install(session, "bench")
    # both take --min-run-time SECONDS; bench_memory.py alone also --max-length L
    session.run("python", str(ROOT / "benchmarks" / "bench_attention.py"), *session.posargs)
    session.run("python", str(ROOT / "benchmarks" / "bench_memory.py"), *session.posargs)


@nox.session(default=False)
def notebooks(session: nox.Session) -> None:
    """Run every downloadable notebook of the built English edition in a plain kernel."""
    site = BUILD / "html"
    if not (site / "en" / "_sources").is_dir():
        session.error(f"{site / 'en'} is not built: run `nox -s docs` first")
    install(session, "notebooks")
    session.run(
        "pytest",
        "tests/notebooks",
        "-p", "no:cacheprovider",
        "--no-header",
        *session.posargs,
        env={"ATTENTION_BOOK_SITE": str(site), "ATTENTION_BOOK_EDITION": "en"},
    )  # fmt: skip


def _ensure_chromium(session: nox.Session) -> None:
    """Install Debian's Chromium and its driver when they are missing and we may."""
    if Path("/usr/bin/chromium").exists() and Path("/usr/bin/chromedriver").exists():
        return
    if shutil.which("apt-get") is None or os.geteuid() != 0:
        session.error(
            "Chromium and chromedriver are needed: install your system's packages "
            "(Debian: apt-get install chromium chromium-driver) and run again."
        )
    packages = ["chromium", "chromium-driver", "fonts-noto-cjk"]
    quiet = {"DEBIAN_FRONTEND": "noninteractive"}
    session.run("apt-get", "update", "-qq", external=True, env=quiet)
    session.run("apt-get", "install", "-y", "-qq", *packages, external=True, env=quiet)


@nox.session(default=False)
def browser(session: nox.Session) -> None:
    """Serve the built site on localhost and check every page of both editions in Chromium."""
    site = BUILD / "html"
    for lang in EDITIONS:
        if not (site / lang / "index.html").is_file():
            session.error(f"{site / lang} is not built: run `nox -s docs` first")
    _ensure_chromium(session)
    install(session, "browser", package=False)
    session.run(
        "pytest",
        "tests/browser",
        "--confcutdir", "tests/browser",  # tests/conftest.py needs torch, not installed here
        "-p", "no:cacheprovider",
        "--no-header",
        *session.posargs,
        env={"ATTENTION_BOOK_SITE": str(site)},
    )  # fmt: skip
    session.log(f"Screenshots in {BUILD / 'browser'}")
