"""Every internal link of the documents resolves, and the docs build as a site without a warning.

An internal link is a relative one: `[Using it](docs/using.md)`, `[Metrics](#metrics)`,
`[Security](admin.md#security)`. Its file must exist, and an `#anchor` into a Markdown file must be
one of that file's headings, slugged as GitHub slugs them (where the README, bench/ and tests/ are
read) and as MkDocs does (where docs/ is read: the same for the plain headings used here; the
strict build below checks MkDocs' own). Links with a scheme (https:, mailto:) and anything inside
code are not followed. The layout table of docs/developing.md must name every room of the tree.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PAGES = sorted(
    [
        ROOT / "README.md",
        *(ROOT / "docs").glob("*.md"),
        *(ROOT / "bench").glob("*.md"),
        ROOT / "tests" / "README.md",
        *(ROOT / "tests").glob("*/README.md"),
    ]
)

_FENCE = re.compile(r"^(```|~~~).*?^\1[^\n]*$", re.MULTILINE | re.DOTALL)
_COMMENT = re.compile(r"<!--.*?-->", re.DOTALL)
_CODE_SPAN = re.compile(r"(`+)(?:(?!\1).)+?\1", re.DOTALL)
# [text](target) and ![alt](target), with an optional "title"; and [label]: target definitions.
_INLINE = re.compile(r"!?\[(?:[^\]\\]|\\.)*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_DEFINITION = re.compile(r"^ {0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s|$)", re.MULTILINE)
_HEADING = re.compile(r"^ {0,3}#{1,6}[ \t]+(.*?)[ \t]*#*[ \t]*$", re.MULTILINE)
_HTML_ID = re.compile(r"<a\s+(?:id|name)=\"([^\"]+)\"", re.IGNORECASE)
_SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")


def prose(text: str) -> str:
    """The text with fenced code, comments and code spans blanked (their line count kept)."""
    blank = lambda m: re.sub(r"[^\n]", " ", m.group(0))  # noqa: E731
    return _CODE_SPAN.sub(blank, _COMMENT.sub(blank, _FENCE.sub(blank, text)))


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: markup dropped, lower case, punctuation removed, spaces to `-`."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link's text only
    text = re.sub(r"<[^>]+>", "", text)  # inline HTML
    text = re.sub(r"[^\w\- ]", "", text.lower())
    return text.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    found: set[str] = set()
    seen: dict[str, int] = {}
    text = _FENCE.sub("", page.read_text())
    for m in _HEADING.finditer(text):
        base = slug(m.group(1))
        n = seen.get(base, 0)
        seen[base] = n + 1
        found.add(base if n == 0 else f"{base}-{n}")  # a repeated heading gets -1, -2, ...
    return found | set(_HTML_ID.findall(text))


def links(page: Path) -> list[tuple[int, str]]:
    text = prose(page.read_text())
    found = [m for pattern in (_INLINE, _DEFINITION) for m in pattern.finditer(text)]
    return sorted((text.count("\n", 0, m.start()) + 1, m.group(1)) for m in found)


def broken(page: Path) -> list[str]:
    """Each internal link of `page` that does not resolve, as `line: target: why`."""
    problems = []
    for line, target in links(page):
        if _SCHEME.match(target) or target.startswith("//"):
            continue  # another site: not ours to check here
        path, _, anchor = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        if not dest.exists():
            problems.append(
                f"{line}: {target}: no such file {dest.relative_to(ROOT) if dest.is_relative_to(ROOT) else dest}"
            )
        elif anchor and dest.suffix != ".md":
            problems.append(f"{line}: {target}: an anchor into {dest.name}, which has no headings to check")
        elif anchor and anchor not in anchors(dest):
            problems.append(f"{line}: {target}: {dest.name} has no heading with the anchor #{anchor}")
    return problems


def test_slugs_are_githubs() -> None:
    assert slug("Two backends: PyTorchJob or TrainJob") == "two-backends-pytorchjob-or-trainjob"
    assert slug("Which ratio for your setup?") == "which-ratio-for-your-setup"
    assert slug("Data (`data/prepare.py`, `data/fetch.py`)") == "data-datapreparepy-datafetchpy"
    assert slug("make local wall time") == "make-local-wall-time"
    assert slug("See [Using it](docs/using.md)") == "see-using-it"


def test_the_checker_sees_a_broken_link(tmp_path: Path) -> None:
    (tmp_path / "a.md").write_text("# A\n\n## Here\n\n[ok](#here) [ok](b.md#b) `[code](nowhere.md)`\n")
    (tmp_path / "b.md").write_text("# B\n\n[gone](c.md) [no anchor](a.md#there) [web](https://example.com/x.md)\n")
    assert broken(tmp_path / "a.md") == []
    assert [p.split(":")[0] for p in broken(tmp_path / "b.md")] == ["3", "3"]


@pytest.mark.parametrize("page", PAGES, ids=[str(p.relative_to(ROOT)) for p in PAGES])
def test_internal_links_resolve(page: Path) -> None:
    problems = broken(page)
    assert problems == [], f"{page.relative_to(ROOT)}: links that do not resolve:\n" + "\n".join(problems)


def test_the_readme_links_every_docs_page() -> None:
    """The README's "Where to read on" is the way in: every page of the site is reachable from it."""
    linked = {(ROOT / target.partition("#")[0]).resolve() for _, target in links(ROOT / "README.md")}
    pages = {p.resolve() for p in (ROOT / "docs").glob("*.md") if p.name != "index.md"}
    assert pages - linked == set(), "docs pages the README does not link"


def test_the_layout_table_names_every_room() -> None:
    """docs/developing.md's layout table has a row for each room: `  room/` under miniseries, `    room/` under control."""
    table = (ROOT / "docs" / "developing.md").read_text().split("## Layout", 1)[1].split("\n## ", 1)[0]
    rows = set(re.findall(r"^\| `( *[\w/]+)` \|", table, flags=re.MULTILINE))
    package = ROOT / "operator" / "src" / "miniseries"
    rooms = {f"  {d.name}/" for d in package.iterdir() if (d / "__init__.py").exists()}
    rooms |= {f"    {d.name}/" for d in (package / "control").iterdir() if (d / "__init__.py").exists()}
    assert rooms - rows == set(), "rooms of the tree the layout table does not name"


def test_the_site_builds_without_a_warning(tmp_path: Path) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "mkdocs",
            "build",
            "--strict",
            "--config-file",
            str(ROOT / "mkdocs.yml"),
            "--site-dir",
            str(tmp_path / "site"),
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert proc.returncode == 0, f"mkdocs build --strict failed:\n{proc.stdout[-3000:]}{proc.stderr[-3000:]}"
    assert (tmp_path / "site" / "index.html").exists()
