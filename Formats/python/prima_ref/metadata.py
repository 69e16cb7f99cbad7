"""Patient metadata -> the text the PRIMA text encoder reads (Formats/metadata-schema.md, format version 1).

Written from Formats/metadata-schema.md and Docs/prima-model.md ("Metadata to text"), independently of the Swift
PrimaMetadata module, so that the two can be checked against each other.

    schema = Schema.pad_ufes_20()                       # the default schema (PAD-UFES-20 metadata.csv, 26 columns)
    text = schema.render({"age": "55", "gender": "FEMALE", "smoke": "False", "region": "FACE", "diameter_1": "6.0"})
    # 'smokes: no; age: 55 years; gender: female; region: face; diameter 1: 6 mm'

Rules (the doc's, with the points it leaves open settled as noted):
  * keys: every key must be a field's `key` or listed in `ignored`, otherwise the record is refused;
  * unknown values are skipped, whatever the kind: None (JSON null), an absent key, and strings that are "UNK" or
    empty once leading and trailing spaces and tabs are trimmed;
  * boolean: JSON true/false or the strings True/False/true/false (trimmed); rendered "yes"/"no";
  * number: a JSON number or a string parsing as a finite float (trimmed); rendered as an integer when it has no
    fraction (55, not 55.0), else in the shortest round-trip form (6.5), followed by " " + unit if there is one;
  * category: the trimmed string if it is one of `values`; otherwise, if it parses as a finite number, the number in
    the form above ("3.0" -> "3"); a JSON number likewise; must then be one of `values`; rendered by `labels`, else
    the value lower-cased;
  * text: the string with leading and trailing spaces and tabs trimmed (the doc says "verbatim"; CSV cells are
    sometimes padded, and trimming is what the Swift reader does), or a JSON number in the form above;
  * rendering: "name: value" for each known field whose `text` is true, in schema order, joined by "; ".
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence

SCHEMA_FORMAT = "prima-metadata-schema"
SCHEMA_VERSION = 1
UNKNOWN_MARKERS = ("UNK", "")

PAD_UFES_20_COLUMNS = (
    "patient_id", "lesion_id", "smoke", "drink", "background_father", "background_mother", "age", "pesticide",
    "gender", "skin_cancer_history", "cancer_history", "has_piped_water", "has_sewage_system", "fitspatrick",
    "region", "diameter_1", "diameter_2", "diagnostic", "itch", "grew", "hurt", "changed", "bleed", "elevation",
    "img_id", "biopsed",
)
# The 14 anatomical sites of PAD-UFES-20 (the doc says "the 14 sites" without listing them; this is the order of
# Sources/PrimaMetadata MetadataSchema.padUfes20, which only matters for the soft-target codes, not for the text).
PAD_UFES_20_REGIONS = ("ARM", "NECK", "FACE", "HAND", "FOREARM", "CHEST", "NOSE", "THIGH", "SCALP", "EAR", "BACK",
                       "FOOT", "ABDOMEN", "LIP")
PAD_UFES_20_CLASSES = ("BCC", "SCC", "ACK", "SEK", "MEL", "NEV")


class MetadataError(ValueError):
    pass


@dataclass
class Field:
    key: str
    name: str
    kind: str  # boolean | number | category | text
    unit: Optional[str] = None
    values: Sequence[str] = ()
    labels: Mapping[str, str] = field(default_factory=dict)
    text: bool = True
    soft_target: bool = True


def format_number(x: float) -> str:
    """55 for 55.0, 6.5 for 6.5: integers without a fraction, others in the shortest round-trip form."""
    if x == math.floor(x) and abs(x) < 1e15:
        return str(int(x))
    return repr(float(x))


def _trim(s: str) -> str:
    return s.strip(" \t")


@dataclass
class Schema:
    fields: List[Field]
    ignored: Sequence[str] = ()

    @staticmethod
    def pad_ufes_20() -> "Schema":
        b, t = "boolean", "text"
        f = [
            Field("smoke", "smokes", b), Field("drink", "drinks alcohol", b),
            Field("background_father", "father's background", t),
            Field("background_mother", "mother's background", t),
            Field("age", "age", "number", unit="years"),
            Field("pesticide", "pesticide exposure", b),
            Field("gender", "gender", "category", values=("FEMALE", "MALE")),
            Field("skin_cancer_history", "skin cancer history", b), Field("cancer_history", "cancer history", b),
            Field("has_piped_water", "piped water", b), Field("has_sewage_system", "sewage system", b),
            Field("fitspatrick", "Fitzpatrick skin type", "category", values=("1", "2", "3", "4", "5", "6")),
            Field("region", "region", "category", values=PAD_UFES_20_REGIONS),
            Field("diameter_1", "diameter 1", "number", unit="mm"),
            Field("diameter_2", "diameter 2", "number", unit="mm"),
            Field("diagnostic", "diagnosis", "category", values=PAD_UFES_20_CLASSES, text=False),
            Field("itch", "itches", b), Field("grew", "grew", b), Field("hurt", "hurts", b),
            Field("changed", "changed", b), Field("bleed", "bleeds", b), Field("elevation", "elevated", b),
        ]
        return Schema(fields=f, ignored=("patient_id", "lesion_id", "img_id", "biopsed"))

    @staticmethod
    def from_json(text: str) -> "Schema":
        obj = json.loads(text)
        if obj.get("format") != SCHEMA_FORMAT or obj.get("version") != SCHEMA_VERSION:
            raise MetadataError(f"not a {SCHEMA_FORMAT} version {SCHEMA_VERSION} document")
        fields = []
        for fo in obj["fields"]:
            fields.append(Field(key=fo["key"], name=fo["name"], kind=fo["kind"], unit=fo.get("unit"),
                                values=tuple(fo.get("values", ())), labels=dict(fo.get("labels", {})),
                                text=bool(fo["text"]), soft_target=bool(fo["soft_target"])))
        keys = [f.key for f in fields]
        if len(keys) != len(set(keys)):
            raise MetadataError("duplicate field keys")
        return Schema(fields=fields, ignored=tuple(obj.get("ignored", ())))

    def parse(self, record: Mapping[str, Any], source: str = "record") -> "Dict[str, Any]":
        """The known values of the record, {key: value} in schema order (bool, float, category value or str)."""
        known = {f.key for f in self.fields}
        for k in record:
            if k not in known and k not in self.ignored:
                raise MetadataError(f"{source}: unknown field {k!r}")
        out: Dict[str, Any] = {}
        for f in self.fields:
            if f.key not in record:
                continue
            v = _parse_value(record[f.key], f, source)
            if v is not None:
                out[f.key] = v
        return out

    def render(self, record: Mapping[str, Any], source: str = "record") -> str:
        """The metadata text: "name: value" of every known text field, schema order, joined by "; "."""
        values = self.parse(record, source)
        parts = []
        for f in self.fields:
            if f.text and f.key in values:
                parts.append(f"{f.name}: {_render_value(values[f.key], f)}")
        return "; ".join(parts)


def _parse_value(raw: Any, f: Field, source: str):
    def wrong(expected):
        return MetadataError(f"{source}: field {f.key!r}: expected {expected}, got {raw!r}")

    if raw is None or (isinstance(raw, str) and _trim(raw) in UNKNOWN_MARKERS):
        return None
    is_number = isinstance(raw, (int, float)) and not isinstance(raw, bool)
    if f.kind == "boolean":
        if isinstance(raw, bool):
            return raw
        if isinstance(raw, str) and _trim(raw) in ("True", "true", "False", "false"):
            return _trim(raw) in ("True", "true")
        raise wrong("True or False")
    if f.kind == "number":
        x = _number(raw)
        if x is None:
            raise wrong("a number")
        return x
    if f.kind == "category":
        if isinstance(raw, str):
            s = _trim(raw)
            if s not in f.values:
                x = _number(s)
                if x is not None:
                    s = format_number(x)
        elif is_number and math.isfinite(float(raw)):
            s = format_number(float(raw))
        else:
            raise wrong("one of " + ", ".join(f.values))
        if s not in f.values:
            raise MetadataError(f"{source}: field {f.key!r}: {raw!r} is not one of {', '.join(f.values)}")
        return s
    if f.kind == "text":
        if isinstance(raw, str):
            return _trim(raw)
        if is_number:
            return format_number(float(raw))
        raise wrong("text")
    raise MetadataError(f"field {f.key!r}: unknown kind {f.kind!r}")


def _number(raw) -> Optional[float]:
    if isinstance(raw, bool):
        return None
    if isinstance(raw, (int, float)):
        x = float(raw)
    elif isinstance(raw, str):
        try:
            x = float(_trim(raw))
        except ValueError:
            return None
    else:
        return None
    return x if math.isfinite(x) else None


def _render_value(v, f: Field) -> str:
    if f.kind == "boolean":
        return "yes" if v else "no"
    if f.kind == "number":
        return format_number(v) + (f" {f.unit}" if f.unit else "")
    if f.kind == "category":
        return f.labels.get(v, v.lower())
    return v


def read_csv(path: "Path | str") -> List[Dict[str, str]]:
    """The rows of a metadata.csv as {column: cell} dicts (cells as strings; blanks are "")."""
    with open(path, newline="", encoding="utf-8") as fh:
        return [dict(row) for row in csv.DictReader(fh)]
