"""A manual page as data, written out as man(7) roff: no I/O, nothing of Melon's, so what a page
says (scripts/gen_man.py) and how roff spells it stay apart.

Text is what `--help` prints: paragraphs split by blank lines, a more-indented block kept as it is
(an example command), `code` in backquotes set in bold. roff's own characters are escaped: `\\` as
`\\e`, every `-` as `\\-` (an option's dash, which man would otherwise print as a hyphen that a
pasted command does not accept), a `.` or `'` starting a line behind `\\&`, and anything beyond
ASCII as `\\[uXXXX]`, which groff and mandoc read whatever the input encoding.
"""
from __future__ import annotations

import re
import textwrap
from dataclasses import dataclass

CODE = re.compile(r"`([^`\n]+(?:\n[^`\n]+)?)`")  # a span in backquotes, which may wrap onto a second line
#: A command line in a synopsis: the command's words (`mnode drain`), then what follows them.
Usage = tuple[str, str]


@dataclass(frozen=True)
class Item:
    """One option: its flags (`-c`, `--cpus-per-task`), the name of its value, what it does."""

    flags: tuple[str, ...]
    metavar: str | None
    help: str


@dataclass(frozen=True)
class Section:
    """`.SH TITLE` (or `.SS` inside another): a usage line, text, then options, then subsections."""

    title: str
    text: str = ""
    items: tuple[Item, ...] = ()
    subsections: tuple[Section, ...] = ()
    usage: Usage | None = None


@dataclass(frozen=True)
class Page:
    """A section-1 page: NAME, SYNOPSIS, then `sections`, then SEE ALSO."""

    name: str
    summary: str
    synopsis: tuple[Usage, ...]
    sections: tuple[Section, ...]
    see_also: tuple[str, ...] = ()
    source: str = ""  # .TH's fourth field: the package and its version
    manual: str = "User Commands"


def escape(text: str) -> str:
    """Text as roff prints it literally (not yet safe at the start of a line: see `lines`)."""
    text = text.replace("\\", "\\e").replace("-", "\\-")
    return "".join(c if ord(c) < 128 else f"\\[u{ord(c):04X}]" for c in text)


def lines(text: str) -> str:
    """Escaped text whose every line is safe to fill: no leading blank (a break) nor control character."""
    out = []
    for line in text.split("\n"):
        line = " ".join(line.split())  # filled text: roff would keep a run of blanks as it is
        if line:
            out.append("\\&" + line if line[0] in ".'" else line)
    return "\n".join(out)


def inline(text: str) -> str:
    """A run of prose: escaped, `code` in bold."""
    parts = CODE.split(text)
    return "".join(escape(p) if i % 2 == 0 else f"\\fB{escape(p)}\\fR" for i, p in enumerate(parts))


def argument(text: str) -> str:
    """A macro's argument: escaped and quoted (a double quote in it has no escape, so none may be there)."""
    if '"' in text:
        raise ValueError(f"a roff macro argument cannot hold a double quote: {text!r}")
    return f'"{escape(text)}"'


def paragraphs(text: str) -> list[str]:
    """`--help` text as roff: prose filled, a block indented beyond its paragraph kept line by line."""
    out = []
    for block in re.split(r"\n\s*\n", textwrap.dedent(text).strip("\n")):
        if not block.strip():
            continue
        if block.startswith((" ", "\t")):
            out.append(".PP\n.RS 4\n.nf\n" + "\n".join("\\&" + escape(line.strip()) for line in
                                                      textwrap.dedent(block).splitlines()) + "\n.fi\n.RE")
        else:
            out.append(".PP\n" + lines(inline(block)))
    return out


def usage(line: Usage) -> str:
    """A command line in a synopsis: the command's words bold, the rest as written."""
    command, rest = line
    return "\n".join(filter(None, [f".B {argument(command)}", lines(escape(rest))]))


def item(it: Item) -> str:
    flags = ", ".join(f"\\fB{escape(flag)}\\fR" for flag in it.flags)
    tag = f"{flags} \\fI{escape(it.metavar)}\\fR" if it.metavar else flags
    return ".TP\n" + lines(tag) + ("\n" + lines(inline(it.help)) if it.help.strip() else "")


def section(sec: Section, level: str = "SH") -> str:
    parts = [f".{level} {argument(sec.title.upper() if level == 'SH' else sec.title)}"]
    if sec.usage:
        parts.append(usage(sec.usage))
    parts += paragraphs(sec.text)
    parts += [item(it) for it in sec.items]
    parts += [section(sub, "SS") for sub in sec.subsections]
    return "\n".join(parts)


def render(page: Page) -> str:
    """The whole page, ready for man(1): deterministic (no date), so a regenerated page equals the
    committed one until a definition changes."""
    head = [f'.TH {argument(page.name.upper())} 1 "" {argument(page.source)} {argument(page.manual)}',
            ".SH NAME", lines(f"{escape(page.name)} \\- {inline(page.summary)}"), ".SH SYNOPSIS"]
    head.append("\n.br\n".join(usage(line) for line in page.synopsis))
    body = [section(sec) for sec in page.sections]
    tail = []
    if page.see_also:
        refs = [f".BR {escape(name)} (1)" + ("," if n < len(page.see_also) - 1 else "")
                for n, name in enumerate(page.see_also)]
        tail = [".SH \"SEE ALSO\"", *refs]
    return "\n".join([*head, *body, *tail]) + "\n"
