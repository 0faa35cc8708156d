"""Print the requirements of the gfm distribution for one image, one per line.

The Dockerfiles install these before they copy the source, so a code change
rebuilds only the last layer. Reads ``pyproject.toml``: the core
dependencies plus the requested extras, with ``gfm[...]`` self-references
expanded and any ``--exclude`` distribution left out (the featurize image
keeps the torch that its vLLM base image was built with).

Usage: ``python images/requirements.py pyproject.toml EXTRA... [--exclude NAME]``
"""

from __future__ import annotations

import argparse
import re
import sys
import tomllib
from pathlib import Path

# A requirement's distribution name: everything before extras, a version
# specifier, a marker or whitespace.
_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")


def _name(requirement: str) -> str:
    match = _NAME.match(requirement)
    if match is None:
        raise ValueError(f"cannot read a distribution name from {requirement!r}")
    return re.sub(r"[-_.]+", "-", match.group(1)).lower()


def requirements(pyproject: Path, extras: list[str], exclude: set[str]) -> list[str]:
    """Return the core requirements plus those of ``extras``, in file order.

    Args:
        pyproject: the ``pyproject.toml`` of the gfm distribution.
        extras: names of ``[project.optional-dependencies]`` tables.
        exclude: distribution names to leave out (normalized, lower case).

    Raises:
        ValueError: if an extra is not defined.
    """
    project = tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]
    own_name = _name(project["name"])
    optional = project.get("optional-dependencies", {})
    exclude = {_name(name) for name in exclude}

    result: list[str] = []
    pending = list(project.get("dependencies", []))
    seen_extras: set[str] = set()
    queue = list(extras)
    while queue:
        extra = queue.pop(0)
        if extra in seen_extras:
            continue
        if extra not in optional:
            raise ValueError(
                f"unknown extra {extra!r}; pyproject.toml defines {sorted(optional)}"
            )
        seen_extras.add(extra)
        pending.extend(optional[extra])

    for requirement in pending:
        name = _name(requirement)
        if name == own_name:
            # gfm[a,b] inside an extra: expand a and b in place.
            inner = re.search(r"\[([^\]]*)\]", requirement)
            nested = [e.strip() for e in inner.group(1).split(",")] if inner else []
            result.extend(
                r for r in requirements(pyproject, nested, exclude) if r not in result
            )
            continue
        if name in exclude or requirement in result:
            continue
        result.append(requirement)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("pyproject", type=Path, help="path of pyproject.toml")
    parser.add_argument("extras", nargs="*", help="extras to include")
    parser.add_argument(
        "--exclude", action="append", default=[],
        help="a distribution to leave out (repeatable)",
    )
    args = parser.parse_args(argv)
    for line in requirements(args.pyproject, args.extras, set(args.exclude)):
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
