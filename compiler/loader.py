"""Reading a spec and the files it includes (by path relative to the including file)."""

from __future__ import annotations

import hashlib
import posixpath
from dataclasses import dataclass, field
from pathlib import Path

from . import ir
from .errors import ShrinkError
from .syntax.parser import parse, read_source


@dataclass
class Sources:
    """A spec file and everything it includes, each parsed once, dependencies first."""

    main: ir.Program
    programs: list[ir.Program] = field(default_factory=list)  # includes first, main last
    texts: dict[str, str] = field(default_factory=dict)

    @property
    def spec_hash(self) -> str:
        h = hashlib.sha256()
        for prog in self.programs:
            h.update(self.texts[prog.file].encode("utf-8"))
            h.update(b"\0")
        return h.hexdigest()


MAX_INCLUDE_DEPTH = 64  # includes of includes: far beyond any real project, far below a stack


def load(path: str | Path, text: str | None = None) -> Sources:
    """Parse ``path`` (or ``text`` standing for it) and, recursively, its includes."""
    path = Path(path)
    display = path.as_posix()
    sources = Sources(main=ir.Program())
    done: dict[Path, ir.Program] = {}
    sources.main = _visit(path, display, [], None, text, sources, done)
    return sources


def _visit(p: Path, shown: str, stack: list[tuple[Path, str]], loc: ir.Loc | None,
           src: str | None, sources: Sources, done: dict[Path, ir.Program]) -> ir.Program:
    """``load``'s walk over the includes (a module-level function, as a nested one that calls
    itself would be a reference cycle holding every parsed program until the garbage
    collector runs, which large specs pay for)."""
    key = p.resolve()
    for seen, seen_shown in stack:
        if seen == key:
            if seen_shown == stack[-1][1]:
                raise ShrinkError(f"{shown} includes itself", loc, "remove this include")
            chain = " -> ".join([s for _, s in stack[[k for k, _ in stack].index(key):]] + [shown])
            raise ShrinkError(f"include cycle: {chain}", loc, "remove one include of the cycle")
    if key in done:
        return done[key]
    if len(stack) >= MAX_INCLUDE_DEPTH:
        raise ShrinkError(f"includes are nested more than {MAX_INCLUDE_DEPTH} deep", loc,
                          "include the files you need from fewer levels")
    content = src if src is not None else read_source(p, shown, loc)
    prog = parse(content, shown)
    for item in prog.items:
        if isinstance(item, ir.Include):
            if not item.path.endswith(".shrink"):
                raise ShrinkError(
                    f"include must name a .shrink file, got '{item.path}'", item.loc
                )
            child = p.parent / item.path
            child_shown = posixpath.normpath(posixpath.join(posixpath.dirname(shown), item.path))
            if not child.exists():
                raise ShrinkError(
                    f"included file not found: {child_shown}",
                    item.loc,
                    "include paths are relative to the including file",
                )
            _visit(child, child_shown, stack + [(key, shown)], item.loc, None, sources, done)
    done[key] = prog
    sources.programs.append(prog)
    sources.texts[shown] = content
    return prog
