"""mkdocs hooks: pages of the site that are files at the top of the checkout (README.md, SCALING.md,
CHANGELOG.md), so that each fact is written once and reads well both on the code host and in the site.

A docs page embeds one with a line `<!-- include: SCALING.md -->` (or `<!-- include: SCALING.md#name -->`
for the part between `<!-- part: name -->` and `<!-- /part -->`). Links in the embedded text are written
for the checkout (`docs/deploy/swarm.md`, `SCALING.md#commands`); here they become links between pages.
"""

from __future__ import annotations

import posixpath
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
INCLUDE = re.compile(r"^<!-- include: (?P<file>[\w.-]+\.md)(?:#(?P<part>[\w-]+))? -->$", re.MULTILINE)
LINK = re.compile(r"\]\((?P<target>[^)#\s]+\.md)(?P<anchor>#[^)\s]*)?\)")
PART_MARK = re.compile(r"^<!-- /?part(?:: [\w-]+)? -->\n?", re.MULTILINE)
# a file at the top of the checkout -> the page it is in the site; a part of it -> that part's page
HOMES = {"README.md": "index.md", "CHANGELOG.md": "changelog.md"}
PART_HOMES = {"SCALING.md": {"guide": "guides/scaling.md"}}


def part_of(text: str, part: str | None, name: str) -> str:
    if part is None:
        return text
    match = re.search(rf"^<!-- part: {part} -->\n(?P<body>.*?)^<!-- /part -->$", text, re.MULTILINE | re.DOTALL)
    if match is None:
        raise ValueError(f"{name} has no part {part!r} (<!-- part: {part} --> ... <!-- /part -->)")
    return match["body"]


def page_for(target: str, anchor: str, text_of) -> str:
    """The site page a checkout link points to: docs/x.md -> x.md, SCALING.md#a -> the page holding #a."""
    if target.startswith("docs/"):
        return target.removeprefix("docs/")
    if target in HOMES:
        return HOMES[target]
    if target in PART_HOMES:
        for part, page in PART_HOMES[target].items():
            if not anchor or _has_anchor(part_of(text_of(target), part, target), anchor):
                return page
    return target


def _has_anchor(text: str, anchor: str) -> bool:
    from markdown.extensions.toc import slugify

    return any(slugify(h, "-") == anchor.lstrip("#") for h in re.findall(r"^#+ (.*)$", text, re.MULTILINE))


def embed(markdown: str, page_uri: str) -> str:
    here = posixpath.dirname(page_uri)

    def text_of(name: str) -> str:
        return (ROOT / name).read_text()

    def relink(match: re.Match) -> str:
        anchor = match["anchor"] or ""
        page = page_for(match["target"], anchor, text_of)
        return f"]({posixpath.relpath(page, here or '.')}{anchor})"

    def include(match: re.Match) -> str:
        body = part_of(text_of(match["file"]), match["part"], match["file"])
        return LINK.sub(relink, PART_MARK.sub("", body))

    return INCLUDE.sub(include, markdown)


def on_page_markdown(markdown, page, config, files):
    return embed(markdown, page.file.src_uri)
