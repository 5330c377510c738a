"""Every relative link in README.md and docs/*.md leads somewhere: the file exists and, for a
link into a Markdown page, the heading its anchor names is there (GitHub's anchors)."""

import glob
import os
import re

import pytest

from helpers import REPO

PAGES = [os.path.join(REPO, 'README.md'), *sorted(glob.glob(os.path.join(REPO, 'docs', '*.md')))]
LINK = re.compile(r'\[[^\]]*\]\(([^)\s]+)\)')
FENCE = re.compile(r'```.*?```', re.S)


def github_anchor(heading: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation dropped, spaces to dashes."""
    text = re.sub(r'[`*_]', '', heading.strip().lower())
    text = re.sub(r'[^\w\- ]', '', text)
    return text.replace(' ', '-')


def anchors(path: str) -> set:
    with open(path) as f:
        text = FENCE.sub('', f.read())
    return {github_anchor(m.group(1)) for m in re.finditer(r'^#+ (.+)$', text, re.M)}


def links(path: str):
    with open(path) as f:
        text = FENCE.sub('', f.read())
    for target in LINK.findall(text):
        if not re.match(r'[a-z]+:', target):  # http:, https:, mailto:
            yield target


def test_the_pages_link_to_each_other():
    names = {os.path.relpath(p, REPO) for p in PAGES}
    assert {'README.md', 'docs/quickstart_nuscenes.md', 'docs/mining.md', 'docs/benchmarks.md'} <= names
    with open(PAGES[0]) as f:
        readme = f.read()
    unlinked = [n for n in names - {'README.md'} if f']({n})' not in readme]
    assert not unlinked, f'README links no page {unlinked}'


@pytest.mark.parametrize('page', PAGES, ids=[os.path.relpath(p, REPO) for p in PAGES])
def test_every_relative_link_resolves(page):
    broken = []
    for target in links(page):
        path, _, anchor = target.partition('#')
        resolved = os.path.normpath(os.path.join(os.path.dirname(page), path)) if path else page
        if not os.path.exists(resolved):
            broken.append(f'{target}: no {os.path.relpath(resolved, REPO)}')
        elif anchor and resolved.endswith('.md') and anchor not in anchors(resolved):
            broken.append(f'{target}: no heading #{anchor} in {os.path.relpath(resolved, REPO)}')
    assert not broken, broken
