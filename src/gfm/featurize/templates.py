"""Item text templates: how each item type is rendered before embedding.

A template is a string with three kinds of parts:

* ``{field}`` is replaced by the item's value of column ``field``. A list
  column (``genres``, ``tags``, ``creators``) is joined with ``", "``, and
  ``{field:N}`` keeps only its first ``N`` entries (``{tags:10}`` for an
  artist's top tags). A scalar takes a ``str.format`` spec (``{rating:.1f}``).
* ``[...]`` is an optional group: it is rendered only when every field inside
  it has a value, so separators and labels disappear together with a missing
  field (``[ ({release_year})]``). Groups do not nest.
* Anything else is literal text; ``{{``, ``}}``, ``[[`` and ``]]`` write a
  literal brace or bracket. A bracket inside ``{...}`` is part of the
  field's spec (``{title:[^20}`` pads with ``[``).

A value is missing when it is null (None, ``pd.NA``, NaT), a float NaN or
infinity, a string of only whitespace and zero-width characters, or a list
with no entry that is present. Infinity counts as missing because no item
text should read "inf". A missing field outside a group renders as nothing.
Runs of whitespace in the result are collapsed to one space and the ends are
stripped. Truncation to the model's maximum length happens later, in the
tokenizer, never on characters here.
"""

from __future__ import annotations

import logging
import math
import re
import string
import unicodedata
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np
import pandas as pd
import pyarrow as pa

from gfm.data.schema import ITEMS_SCHEMA

logger = logging.getLogger(__name__)

# Templates of the item types the shipped loaders produce; a movie renders as
# "Toy Story (1995). Genres: Animation, Children's, Comedy".
DEFAULT_TEMPLATES: dict[str, str] = {
    "movie": (
        "{title}[ ({release_year})][. Genres: {genres}][. Tags: {tags:10}][. By {creators:5}]"
        "[. Language: {language}][. {description}]"
    ),
    "artist": "{title}[. Tags: {tags:10}][. Genres: {genres:10}][. {description}]",
    "tag": "{title}[. {description}]",
}

LIST_SEPARATOR = ", "

_WHITESPACE = re.compile(r"\s+")


class TemplateError(ValueError):
    """A template that cannot be parsed, or that names an unknown column."""


@dataclass(frozen=True)
class _Field:
    name: str
    spec: str


@dataclass(frozen=True)
class _Group:
    # Literal strings and fields in order; optional groups render all or nothing.
    parts: tuple[str | _Field, ...]
    optional: bool


@dataclass
class Template:
    """A parsed item text template.

    Args:
        source: the template string, in the syntax of this module.
    """

    source: str
    groups: tuple[_Group, ...] = field(init=False)

    def __post_init__(self) -> None:
        self.groups = tuple(_parse(self.source))

    @property
    def fields(self) -> list[str]:
        """Column names the template reads, in order of first use."""
        names: list[str] = []
        for group in self.groups:
            for part in group.parts:
                if isinstance(part, _Field) and part.name not in names:
                    names.append(part.name)
        return names

    def render(self, values: Mapping[str, Any]) -> tuple[str, list[str]]:
        """Render one item.

        Args:
            values: the item's value of each field in :attr:`fields`.

        Returns:
            The normalized text and the names of the fields that were missing.
        """
        pieces: list[str] = []
        missing: list[str] = []
        for group in self.groups:
            rendered: list[str] = []
            complete = True
            for part in group.parts:
                if isinstance(part, str):
                    rendered.append(part)
                    continue
                text = _format_value(values.get(part.name), part)
                if text is None:
                    missing.append(part.name)
                    complete = False
                else:
                    rendered.append(text)
            if complete or not group.optional:
                pieces.append("".join(rendered))
        text = _WHITESPACE.sub(" ", "".join(pieces)).strip()
        return text, missing


def _split_groups(source: str) -> list[tuple[str, bool]]:
    """Split a template into (text, optional) runs at unescaped brackets.

    Brackets inside a ``{field:spec}`` belong to the spec, so ``{title:[^20}``
    centers the title with ``[`` as the fill character.
    """
    runs: list[tuple[str, bool]] = []
    current: list[str] = []
    optional = False
    i = 0
    while i < len(source):
        char = source[i]
        pair = source[i:i + 2]
        if pair in ("[[", "]]"):
            current.append(char)
            i += 2
            continue
        if pair == "{{":
            current.append(pair)
            i += 2
            continue
        if char == "{" and "}" in source[i:]:
            # string.Formatter parses the field later; its brackets stay in it.
            end = source.index("}", i)
            current.append(source[i:end + 1])
            i = end + 1
            continue
        if char == "[":
            if optional:
                raise TemplateError(
                    f"nested '[' at position {i} in template {source!r}; optional "
                    "groups do not nest (write [[ for a literal bracket)"
                )
            runs.append(("".join(current), False))
            current, optional = [], True
        elif char == "]":
            if not optional:
                raise TemplateError(
                    f"unmatched ']' at position {i} in template {source!r} "
                    "(write ]] for a literal bracket)"
                )
            runs.append(("".join(current), True))
            current, optional = [], False
        else:
            current.append(char)
        i += 1
    if optional:
        raise TemplateError(f"unclosed '[' in template {source!r}")
    runs.append(("".join(current), False))
    return [run for run in runs if run[0]]


def _parse(source: str) -> list[_Group]:
    if not isinstance(source, str):
        raise TemplateError(f"a template must be a string, got {source!r}")
    groups = []
    for text, optional in _split_groups(source):
        parts: list[str | _Field] = []
        try:
            parsed = list(string.Formatter().parse(text))
        except ValueError as error:
            raise TemplateError(f"invalid template {source!r}: {error}") from error
        for literal, name, spec, conversion in parsed:
            if literal:
                parts.append(literal)
            if name is None:
                continue
            if not name.isidentifier():
                raise TemplateError(
                    f"invalid field {{{name}}} in template {source!r}: a field is "
                    "one column name, such as {title}"
                )
            if conversion:
                raise TemplateError(
                    f"conversion !{conversion} on field {name!r} in template "
                    f"{source!r} is not supported; drop it"
                )
            parts.append(_Field(name, spec or ""))
        groups.append(_Group(tuple(parts), optional))
    return groups


def _is_missing_scalar(value: Any) -> bool:
    """Return whether a scalar is null: None, ``pd.NA``, a NaT of pandas or
    NumPy, or a float NaN or infinity (Python or NumPy)."""
    if value is None or value is pd.NA or value is pd.NaT:
        return True
    if isinstance(value, (float, np.floating)):
        return not math.isfinite(value)
    if isinstance(value, (np.datetime64, np.timedelta64)):
        return bool(np.isnat(value))
    return False


def _is_blank(text: str) -> bool:
    """Return whether ``text`` has only whitespace and invisible format
    characters (Unicode category Cf, such as the zero-width space U+200B)."""
    return all(char.isspace() or unicodedata.category(char) == "Cf" for char in text)


def _format_value(value: Any, part: _Field) -> str | None:
    """Return the text of one field, or None when the value is missing."""
    if isinstance(value, (list, tuple, np.ndarray)):
        entries = [
            str(entry).strip()
            for entry in value
            if not _is_missing_scalar(entry) and not _is_blank(str(entry))
        ]
        if part.spec:
            if not part.spec.isdigit():
                raise TemplateError(
                    f"field {{{part.name}:{part.spec}}} is a list; its spec must be "
                    "a count of entries to keep, such as {tags:10}"
                )
            entries = entries[: int(part.spec)]
        return LIST_SEPARATOR.join(entries) if entries else None

    if _is_missing_scalar(value):
        return None
    if isinstance(value, (float, np.floating)) and float(value).is_integer() and not part.spec:
        # A nullable int column read through pandas arrives as float.
        value = int(value)
    if isinstance(value, np.generic):
        value = value.item()
    try:
        text = format(value, part.spec)
    except (TypeError, ValueError) as error:
        raise TemplateError(
            f"cannot format value {value!r} of field {part.name!r} with spec "
            f"{part.spec!r}: {error}"
        ) from error
    text = text.strip()
    return None if _is_blank(text) else text


# Marks a column whose value type is unknown, so no sample value exists.
_UNKNOWN_TYPE = object()


def _sample_of_arrow_type(data_type: pa.DataType) -> Any:
    if pa.types.is_string(data_type) or pa.types.is_large_string(data_type):
        return "text"
    if pa.types.is_boolean(data_type):
        return True
    if pa.types.is_integer(data_type):
        return 1
    if pa.types.is_floating(data_type):
        return 1.5
    if pa.types.is_timestamp(data_type) or pa.types.is_date(data_type):
        return pd.Timestamp("2000-01-01")
    if pa.types.is_list(data_type) or pa.types.is_large_list(data_type):
        return []
    return _UNKNOWN_TYPE


def _sample_value(column: pd.Series) -> Any:
    """Return a value of the column's type, from its dtype or, for an object
    column, from ``ITEMS_SCHEMA``; :data:`_UNKNOWN_TYPE` when neither gives one."""
    dtype = column.dtype
    if isinstance(dtype, pd.ArrowDtype):
        return _sample_of_arrow_type(dtype.pyarrow_dtype)
    if isinstance(dtype, pd.StringDtype):
        return "text"
    if pd.api.types.is_bool_dtype(dtype):
        return True
    if pd.api.types.is_integer_dtype(dtype):
        return 1
    if pd.api.types.is_float_dtype(dtype):
        return 1.5
    if pd.api.types.is_datetime64_any_dtype(dtype):
        return pd.Timestamp("2000-01-01")
    if column.name in ITEMS_SCHEMA.names:
        return _sample_of_arrow_type(ITEMS_SCHEMA.field(column.name).type)
    return _UNKNOWN_TYPE


def _check_specs(item_type: str, template: Template, items: pd.DataFrame) -> None:
    """Format a value of each field's column type with the field's spec, so
    an invalid spec fails even when every value of the column is missing.

    Raises:
        TemplateError: naming the item type, field, spec and column type.
    """
    for group in template.groups:
        for part in group.parts:
            if isinstance(part, str) or not part.spec:
                continue
            sample = _sample_value(items[part.name])
            if sample is _UNKNOWN_TYPE:
                continue
            try:
                _format_value(sample, part)
            except TemplateError as error:
                raise TemplateError(
                    f"template of item type {item_type!r}: spec {part.spec!r} of field "
                    f"{part.name!r} does not fit the column's type "
                    f"({items[part.name].dtype}, sample value {sample!r}): {error}"
                ) from None


def parse_templates(templates: Mapping[str, str]) -> dict[str, Template]:
    """Parse a template per item type.

    Raises:
        TemplateError: naming the item type whose template is invalid.
    """
    parsed = {}
    for item_type, source in templates.items():
        try:
            parsed[item_type] = Template(source)
        except TemplateError as error:
            raise TemplateError(f"template of item type {item_type!r}: {error}") from None
    return parsed


@dataclass
class RenderResult:
    """Rendered texts of a catalog and what was missing while rendering.

    Attributes:
        texts: ``[num_items]`` one text per row of the items table, in order.
        missing_fields: per item type, count of items per field that had no
            value.
        empty_rows: row positions whose text is empty after rendering.
    """

    texts: list[str]
    missing_fields: dict[str, dict[str, int]]
    empty_rows: list[int]


def render_catalog(items: pd.DataFrame, templates: Mapping[str, str]) -> RenderResult:
    """Render every item with the template of its ``item_type``.

    Args:
        items: items table in the schema of ``gfm.data.schema.ITEMS_SCHEMA``;
            it needs ``item_type`` and the columns its templates name.
        templates: template per item type.

    Returns:
        The texts in row order, missing-field counts and empty rows.

    Raises:
        TemplateError: if a template is invalid, names a column the table
            lacks, or has a format spec that does not fit its column's type
            (checked on a sample value, so also when every value is missing).
        ValueError: if an item type present in ``items`` has no template.
    """
    if "item_type" not in items.columns:
        raise ValueError(
            f"items table has no item_type column (columns: {list(items.columns)})"
        )
    parsed = parse_templates(templates)
    # Template keys are strings and the output stores types as strings, so an
    # item type of 1 uses the template of "1".
    types = [item_type if _is_missing_scalar(item_type) else str(item_type)
             for item_type in items["item_type"].tolist()]

    counts = Counter(types)
    uncovered = sorted(t for t in counts if t not in parsed)
    if uncovered:
        detail = ", ".join(f"{t!r} ({counts[t]} items)" for t in uncovered)
        raise ValueError(
            f"no template for item type {detail}; add one under templates in the "
            f"featurize settings (templates exist for {sorted(parsed)})"
        )

    columns: dict[str, list[Any]] = {}
    for item_type in counts:
        for name in parsed[item_type].fields:
            if name not in items.columns:
                raise TemplateError(
                    f"template of item type {item_type!r} names field {name!r}, "
                    f"which the items table lacks (columns: {list(items.columns)})"
                )
            if name not in columns:
                columns[name] = items[name].tolist()
        _check_specs(item_type, parsed[item_type], items)

    texts: list[str] = []
    missing: dict[str, Counter[str]] = {t: Counter() for t in counts}
    empty_rows: list[int] = []
    for row, item_type in enumerate(types):
        template = parsed[item_type]
        values = {name: columns[name][row] for name in template.fields}
        text, missing_here = template.render(values)
        missing[item_type].update(missing_here)
        if not text:
            empty_rows.append(row)
        texts.append(text)

    logger.debug("rendered %d items of %d types", len(texts), len(counts))
    missing_fields = {t: dict(c) for t, c in missing.items() if c}
    return RenderResult(texts=texts, missing_fields=missing_fields, empty_rows=empty_rows)


def render_texts(items: pd.DataFrame, templates: Mapping[str, str]) -> list[str]:
    """Render every item to the text that is embedded, in row order.

    Args:
        items: items table with ``item_type`` and the columns the templates
            name (see :func:`render_catalog`).
        templates: template per item type, in the syntax of this module.

    Returns:
        ``[num_items]`` texts; an item whose fields are all missing gets ``""``.
    """
    return render_catalog(items, templates).texts

