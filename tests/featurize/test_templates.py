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


@pytest.mark.parametrize("missing", [
    None, float("nan"), pd.NA, pd.NaT, "", "   ", np.float32("nan"), np.float64("nan"),
    float("inf"), -np.inf, np.datetime64("NaT"), np.timedelta64("NaT"), "\u200b",
    " \u200b\u2060\ufeff ",
])
def test_render_missing_scalar_drops_its_group(missing):
    template = Template("{title}[ ({language})][. {description}]")

    text, missing_fields = template.render(
        {"title": "Heat", "language": missing, "description": "A heist."})

    assert text == "Heat. A heist."
    assert missing_fields == ["language"]
    assert "None" not in text
    assert "nan" not in text
    assert "NaT" not in text
    assert "inf" not in text


@pytest.mark.parametrize("missing", [
    None, [], [None, "", "  "], np.array([], dtype=object),
    [np.float32("nan"), pd.NA, pd.NaT, np.datetime64("NaT"), float("inf"), "\u200b"],
    np.array([np.nan, np.nan], dtype=np.float32),
])
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


def test_render_bracket_fill_in_spec():
    text, missing = Template("{title:[^8}[ ({language:]>4})]").render(
        {"title": "Heat", "language": "en"})

    assert text == "[[Heat[[ (]]en)"
    assert missing == []


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


def test_render_arrow_nulls_inside_lists_and_scalars():
    table = pa.table({
        "item_id": ["tag:1", "tag:2"],
        "item_type": ["tag", "tag"],
        "title": ["x", "y"],
        "scores": pa.array([[1.5, None], [None]], pa.list_(pa.float32())),
        "seen": pa.array([None, 0], pa.timestamp("us")),
        "rank": pa.array([None, 3], pa.int32()),
    })
    items = table.to_pandas()
    items["label"] = pd.array([pd.NA, "top"], dtype="string")
    template = "{title}[ scores {scores}][ seen {seen:%Y}][ rank {rank}][ label {label}]"

    texts = render_texts(items, {"tag": template})

    assert texts == ["x scores 1.5", "y seen 1970 rank 3 label top"]


def test_render_zero_width_title_is_empty():
    items = _items([{"item_id": "tag:1", "item_type": "tag", "title": "\u200b \u200d"}])

    result = render_catalog(items, DEFAULT_TEMPLATES)

    assert result.texts == [""]
    assert result.empty_rows == [0]


def test_render_keeps_zero_width_inside_text():
    text, missing = Template("{title}").render({"title": "Heat\u200b"})

    assert text == "Heat\u200b"
    assert missing == []


@pytest.mark.parametrize(("template", "message"), [
    ("{title:d}", r"spec 'd' of field 'title' does not fit the column's type"),
    ("{title}[. {tags:>5}]", r"spec '>5' of field 'tags' .*count of entries"),
    ("{title}[ ({release_year:>6})]", None),
    ("{title}[ ({release_year:.1f})]", None),
    ("{title}[ ({release_year:%Y})]", r"spec '%Y' of field 'release_year'"),
])
def test_render_checks_specs_of_null_columns(template, message):
    items = _items([{"item_id": "movie:1", "item_type": "movie", "title": "Heat"},
                    {"item_id": "movie:2", "item_type": "movie", "title": "Alien"}])
    items["title"] = None

    if message is None:
        assert render_texts(items, {"movie": template}) == ["", ""]
    else:
        with pytest.raises(TemplateError, match=message):
            render_texts(items, {"movie": template})


def test_render_skips_spec_check_of_untyped_column():
    items = _items([{"item_id": "movie:1", "item_type": "movie", "title": "Heat"}])
    items["rating"] = None

    texts = render_texts(items, {"movie": "{title}[ rated {rating:.1f}]"})

    assert texts == ["Heat"]


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


def test_render_non_string_item_type_uses_string_key():
    items = pd.DataFrame({"item_id": ["a"], "item_type": [1], "title": ["x"]})

    assert render_texts(items, {"1": "{title}!"}) == ["x!"]


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
