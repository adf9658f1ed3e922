# Copyright (C) 2026 bts-tf authors. SPDX-License-Identifier: GPL-3.0-or-later
"""Section references point into docs/design.md, and every one names a heading that exists.

Comments cite the design document as ``design §1.7`` (or ``docs/design.md §1.7``, lists such as
``design §5.3, §5.4`` and ranges ``design §6.2–§6.3``). A "§" anywhere else in the repository's
.py/.md/.sh/.txt files would point at a document that does not ship, so it fails here too.
"""
import os
import re

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DESIGN = os.path.join(ROOT, "docs", "design.md")
THIS_FILE = os.path.abspath(__file__)  # its patterns and docstring spell out the forms
EXTENSIONS = (".py", ".md", ".sh", ".txt")
# Not the repository's own text: environments, caches, data, run outputs, upstream file lists.
SKIPPED_DIRS = {"__pycache__", "node_modules", "dataset", "demo_data", "models", "train_test_inputs"}

SECTION = r"§(\d+(?:\.\d+)?)"
SEPARATOR = r"(?:,\s*|\s*[-–]\s*|\s+and\s+)"
# "design §1.2", "design.md §1.2, §1.6", "design §6.2–§6.3" (the first § follows the word design).
CHAIN = re.compile(rf"design(?:\.md)?\s+{SECTION}(?:{SEPARATOR}{SECTION})*")
HEADING = re.compile(r"^#{2,3} (\d+(?:\.\d+)?) \S", re.M)
OLD_SPEC = re.compile(r"\bspec\s*§", re.I)


def _repository_files():
    for dirpath, dirnames, filenames in os.walk(ROOT):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith((".", "result_"))
                             and d not in SKIPPED_DIRS)
        for name in sorted(filenames):
            path = os.path.join(dirpath, name)
            if name.endswith(EXTENSIONS) and os.path.abspath(path) != THIS_FILE:
                yield path


def _read(path):
    with open(path, encoding="utf-8", errors="replace") as handle:
        return handle.read()


def _where(path, text, offset):
    return f"{os.path.relpath(path, ROOT)}:{text.count(chr(10), 0, offset) + 1}"


def design_sections():
    return set(HEADING.findall(_read(DESIGN)))


def test_design_document_has_numbered_sections():
    sections = design_sections()
    assert {"1", "1.7", "1.9", "3", "4.3", "5.5", "6.2", "6.3", "9"} <= sections
    for number in sections:  # every subsection sits under its section
        assert number.split(".")[0] in sections, number


def test_every_design_reference_names_an_existing_heading():
    sections = design_sections()
    broken = []
    for path in _repository_files():
        if path == DESIGN:
            continue
        text = _read(path)
        for chain in CHAIN.finditer(text):
            broken += [f"{_where(path, text, chain.start())}: §{number}"
                       for number in re.findall(SECTION, chain.group(0)) if number not in sections]
    assert not broken, "references to missing docs/design.md sections: " + ", ".join(broken)


def test_design_document_cross_references_exist():
    sections = design_sections()
    text = _read(DESIGN)
    missing = [f"{_where(DESIGN, text, m.start())}: §{m.group(1)}"
               for m in re.finditer(SECTION, text) if m.group(1) not in sections]
    assert not missing, missing


def test_no_section_sign_outside_a_design_reference():
    stray = []
    for path in _repository_files():
        if path == DESIGN:
            continue
        text = _read(path)
        covered = set()
        for chain in CHAIN.finditer(text):
            covered.update(range(chain.start(), chain.end()))
        stray += [_where(path, text, m.start()) for m in re.finditer("§", text)
                  if m.start() not in covered]
        stray += [f"{_where(path, text, m.start())} (the old private spec)"
                  for m in OLD_SPEC.finditer(text)]
    assert not stray, "'§' that does not point into docs/design.md: " + ", ".join(stray)


def test_readme_links_the_design_document():
    assert "docs/design.md" in _read(os.path.join(ROOT, "README.md"))
