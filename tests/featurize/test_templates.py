"""Tests of item text templates."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from gfm.featurize.templates import (
    DEFAULT_TEMPLATES,
    Template,
    TemplateError,
    render_catalog,
    render_texts,
)


def _items(rows: list[dict]) -> pd.DataFrame:
    columns = ["item_id", "item_type", "title", "description", "genres", "tags",
               "creators", "language", "release_year"]
    frame = pd.DataFrame([{c: row.get(c) for c in columns} for row in rows], columns=columns)
    frame["release_year"] = frame["release_year"].astype("Int32")
    return frame


def test_render_texts_default_templates_per_type():
    items = _items([
        {"item_id": "movie:1", "item_type": "movie", "title": "Toy Story",
         "genres": ["Animation", "Children's", "Comedy"], "release_year": 1995},
        {"item_id": "artist:1", "item_type": "artist", "title": "Radiohead",
         "tags": ["alternative", "rock", "british"]},
        {"item_id": "tag:1", "item_type": "tag", "title": "post-rock"},
    ])

    texts = render_texts(items, DEFAULT_TEMPLATES)

    assert texts[0] == "Toy Story (1995). Genres: Animation, Children's, Comedy"
    assert texts[1] == "Radiohead. Tags: alternative, rock, british"
    assert texts[2] == "post-rock"


@pytest.mark.parametrize("missing", [None, float("nan"), pd.NA, "", "   "])
def test_render_missing_scalar_drops_its_group(missing):
    template = Template("{title}[ ({language})][. {description}]")

    text, missing_fields = template.render(
        {"title": "Heat", "language": missing, "description": "A heist."})

    assert text == "Heat. A heist."
    assert missing_fields == ["language"]
    assert "None" not in text
    assert "nan" not in text


@pytest.mark.parametrize("missing", [None, [], [None, "", "  "], np.array([], dtype=object)])
def test_render_missing_list_drops_its_group(missing):
    template = Template("{title}[. Tags: {tags}]")

    text, missing_fields = template.render({"title": "Heat", "tags": missing})

    assert text == "Heat"
    assert missing_fields == ["tags"]


def test_render_list_spec_skips_blanks():
    template = Template("{title}[. Tags: {tags:2}]")

    text, _ = template.render({"title": "Björk", "tags": [None, "icelandic", " ", "art pop",
                                                         "electronic"]})

    assert text == "Björk. Tags: icelandic, art pop"


def test_render_group_needs_every_field():
    template = Template("{title}[ by {creators} in {release_year}]")

    partial, _ = template.render({"title": "Alien", "creators": ["Ridley Scott"],
                                  "release_year": None})
    complete, _ = template.render({"title": "Alien", "creators": ["Ridley Scott"],
                                   "release_year": 1979})

    assert partial == "Alien"
    assert complete == "Alien by Ridley Scott in 1979"


def test_render_float_year_as_integer_and_scalar_spec():
    template = Template("{title} ({release_year})[, rated {rating:.1f}]")

    text, _ = template.render({"title": "Alien", "release_year": 1979.0, "rating": 4.25})

    assert text == "Alien (1979), rated 4.2"


def test_render_escapes_literal_brackets_and_braces():
    template = Template("[[{title}]] {{x}}[ [[{tags}]]]")

    with_tags, _ = template.render({"title": "Heat", "tags": ["crime"]})
    without, _ = template.render({"title": "Heat", "tags": None})

    assert with_tags == "[Heat] {x} [crime]"
    assert without == "[Heat] {x}"


def test_render_collapses_whitespace():
    template = Template("  {title}[.\n\t{description}]  ")

    text, _ = template.render({"title": "Heat", "description": "A  heist\nin LA."})

    assert text == "Heat. A heist in LA."


def test_render_texts_reads_parquet_list_columns():
    table = pa.table({
        "item_id": ["artist:1", "artist:2"],
        "item_type": ["artist", "artist"],
        "title": ["Radiohead", "Unknown Band"],
        "tags": pa.array([["rock", "indie"], None], pa.list_(pa.string())),
        "genres": pa.array([None, None], pa.list_(pa.string())),
        "description": pa.array([None, None], pa.string()),
    })
    items = table.to_pandas()

    texts = render_texts(items, DEFAULT_TEMPLATES)

    assert isinstance(items["tags"][0], np.ndarray)
    assert texts == ["Radiohead. Tags: rock, indie", "Unknown Band"]


def test_render_catalog_counts_missing_fields_and_empty_rows():
    items = _items([
        {"item_id": "movie:1", "item_type": "movie", "title": "Heat", "release_year": 1995},
        {"item_id": "movie:2", "item_type": "movie", "title": " "},
        {"item_id": "tag:1", "item_type": "tag", "title": "rock"},
    ])

    result = render_catalog(items, DEFAULT_TEMPLATES)

    assert result.texts == ["Heat (1995)", "", "rock"]
    assert result.empty_rows == [1]
    assert result.missing_fields["movie"]["genres"] == 2
    assert result.missing_fields["movie"]["release_year"] == 1
    assert result.missing_fields["movie"]["title"] == 1
    assert result.missing_fields["tag"] == {"description": 1}


def test_render_item_type_without_template_raises():
    items = _items([
        {"item_id": "book:1", "item_type": "book", "title": "Dune"},
        {"item_id": "book:2", "item_type": "book", "title": "Emma"},
    ])

    with pytest.raises(ValueError, match=r"no template for item type 'book' \(2 items\)"):
        render_texts(items, DEFAULT_TEMPLATES)


def test_render_unknown_column_raises():
    items = _items([{"item_id": "movie:1", "item_type": "movie", "title": "Heat"}])

    with pytest.raises(TemplateError, match="names field 'plot'"):
        render_texts(items, {"movie": "{title}[. {plot}]"})


def test_render_without_item_type_column_raises():
    with pytest.raises(ValueError, match="no item_type column"):
        render_texts(pd.DataFrame({"title": ["Heat"]}), DEFAULT_TEMPLATES)


@pytest.mark.parametrize(("source", "message"), [
    ("{title}[ [{tags}]]", "nested"),
    ("{title}]", "unmatched"),
    ("{title}[. {tags}", "unclosed"),
    ("{title.upper}", "invalid field"),
    ("{title!r}", "conversion"),
    ("{title", "invalid template"),
    ("{}", "invalid field"),
])
def test_template_syntax_errors(source, message):
    with pytest.raises(TemplateError, match=message):
        Template(source)


def test_list_field_with_non_count_spec_raises():
    template = Template("{title}[. {tags:>5}]")

    with pytest.raises(TemplateError, match="count of entries"):
        template.render({"title": "Heat", "tags": ["crime"]})


def test_template_fields_in_order_of_first_use():
    template = Template("{title}[ ({release_year})][. {genres}][, {title}]")

    assert template.fields == ["title", "release_year", "genres"]
    assert [group.optional for group in template.groups] == [False, True, True, True]
