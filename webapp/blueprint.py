"""flask-smorest Blueprint whose JSON parsing refuses what PostgreSQL cannot store or Python cannot nest."""
from __future__ import annotations

import json
import math

import flask_smorest
from webargs import core
from webargs.flaskparser import FlaskParser, is_json_request


def _no_constants(name: str):
    raise ValueError(f"{name} is not valid JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise ValueError(f"number {text} is out of range")
    return value


class StrictJSONParser(FlaskParser):
    """NaN/Infinity and absurdly deep nesting are malformed JSON (a 400), not a database or recursion error."""

    def _raw_load_json(self, req):
        if not is_json_request(req):
            return core.missing
        data = req.get_data(cache=True)
        if not data:
            return core.missing
        return strict_json_loads(data)


# One decoder for every body: json.loads with hooks builds a new decoder (and its scanner) per call.
_DECODER = json.JSONDecoder(parse_constant=_no_constants, parse_float=_finite_float)


def strict_json_loads(data: bytes | str):
    """json.loads that treats NaN/Infinity, infinite numbers and runaway nesting as malformed JSON."""
    try:
        text = data.decode("utf-8") if isinstance(data, bytes) else data
        if text.startswith("\ufeff"):  # as json.loads says it
            raise json.JSONDecodeError("Unexpected UTF-8 BOM (decode using utf-8-sig)", text, 0)
        return _DECODER.decode(text)
    except json.JSONDecodeError:
        raise
    except UnicodeDecodeError:
        raise
    except (ValueError, RecursionError) as exc:
        # webargs treats an empty doc as "no body"; give it the text so it reports malformed JSON.
        raise json.JSONDecodeError("nested too deeply" if isinstance(exc, RecursionError) else str(exc), "body", 0) from exc


class Blueprint(flask_smorest.Blueprint):
    ARGUMENTS_PARSER = StrictJSONParser()

    def arguments(self, schema, *args, **kwargs):
        """Pass webargs an instance: given a class it builds a new schema on every request (~0.1 ms)."""
        return super().arguments(schema() if isinstance(schema, type) else schema, *args, **kwargs)
