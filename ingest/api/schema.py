"""The error half of the OpenAPI schema, added to every operation by one drf-spectacular
postprocessing hook (``SPECTACULAR_SETTINGS["POSTPROCESSING_HOOKS"]``), so that no endpoint can
forget a status it may answer with: what ``ingest.api.errors`` and DRF return, and the conditional
GET of ``ConditionalGetMiddleware`` (``If-None-Match`` in, ``ETag`` out, 304); and the response
fields that show text as a feed wrote it, without a format the stored text need not have."""

from __future__ import annotations

ERROR = {"$ref": "#/components/schemas/Error"}
INVALID = {"$ref": "#/components/schemas/ValidationError"}

COMPONENTS = {
    "Error": {
        "type": "object",
        "description": "Every error but a refused input: one sentence.",
        "properties": {"detail": {"type": "string"}},
        "required": ["detail"],
    },
    "ValidationError": {
        "type": "object",
        "description": "A refused input: the sentences per field (``non_field_errors`` for the whole body), or a "
                       "``detail`` sentence when the body could not be read at all.",
        "additionalProperties": {"oneOf": [{"type": "array", "items": {"type": "string"}}, {"type": "string"}]},
    },
}

RETRY_AFTER = {"Retry-After": {"schema": {"type": "integer"}, "description": "Seconds to wait before retrying."}}
ETAG = {"ETag": {"schema": {"type": "string"}, "description": "Send it back in If-None-Match to get 304 while "
                                                               "the response is the same."}}
IF_NONE_MATCH = {"in": "header", "name": "If-None-Match", "required": False, "schema": {"type": "string"},
                 "description": "An ETag of an earlier response: 304 without a body while it is still current."}


# Text shown as it was stored: a link is kept when it is an absolute http(s) URL (ingest/links.py
# http_url), which need not be an RFC 3986 URI (non-ASCII, unescaped characters), a registered feed
# URL when Django's URLValidator accepts it (IRIs too), an email when it has an "@". A response
# promises only a string, so that a client validating against the schema never rejects a row the
# pipeline accepted; the requests (ArticleRequest) keep their formats.
_URL = "Shown as stored: an absolute http(s) URL, not always a well-formed URI (non-ASCII or unescaped characters)."
AS_STORED = {
    "Article": {"feed_url": _URL, "site_url": f"{_URL} Empty when the feed names no site."},
    "Author": {"email": "As the feed gave it (text with an @), or empty."},
    "Entry": {"link": f"{_URL} Empty when the entry has none."},
    "Pingback": {"source_url": _URL},
}


def _as_stored(schemas: dict) -> None:
    for component, notes in AS_STORED.items():
        properties = schemas[component]["properties"]
        for name, note in notes.items():
            prop = properties[name]
            alternatives = prop.pop("oneOf", None)  # a URI, or "" when blank is allowed: any string up to the column
            if alternatives:
                prop.update(type="string", maxLength=max(a["maxLength"] for a in alternatives))
            prop.pop("format", None)
            prop["description"] = f"{prop['description']} {note}" if prop.get("description") else note


def _json(schema: dict, description: str, headers: dict | None = None) -> dict:
    response = {"description": description, "content": {"application/json": {"schema": schema}}}
    if headers:
        response["headers"] = headers
    return response


def errors_describe(result: dict, generator, request, public) -> dict:
    schemas = result.setdefault("components", {}).setdefault("schemas", {})
    _as_stored(schemas)
    schemas.update(COMPONENTS)
    for path, operations in result.get("paths", {}).items():
        detail = "{id}" in path
        for method, operation in operations.items():
            if method not in ("get", "post", "put", "patch", "delete"):
                continue
            responses = operation.setdefault("responses", {})
            add = {
                "401": _json(ERROR, "No valid credentials: log in, or send Authorization: Token <key>.",
                             {"WWW-Authenticate": {"schema": {"type": "string"}}}),
                "403": _json(ERROR, "Authenticated, but not allowed (writes need a staff user)."),
                "406": _json(ERROR, "The Accept header asks for a format the API does not serve."),
                "500": _json(ERROR, "The server failed; the error is in its log."),
                "503": _json(ERROR, "The database stayed busy through the retries.", RETRY_AFTER),
            }
            if detail or method == "get":
                add["404"] = _json(ERROR, "No such row (or, on a list, a cursor that is not one of ours).")
            if method in ("post", "put", "patch"):
                add["400"] = _json(INVALID, "The body was refused: a sentence per field.")
                add["409"] = _json(ERROR, "A concurrent write took the same unique value.")
                add["415"] = _json(ERROR, "The body is in a format the API does not read.")
            if method == "get":
                add["400"] = _json(INVALID, "A query parameter was refused.")
                add["304"] = {"description": "Not modified: the If-None-Match ETag is still current.",
                              "headers": ETAG}
                parameters = operation.setdefault("parameters", [])
                if not any(p.get("name") == "If-None-Match" for p in parameters):
                    parameters.append(dict(IF_NONE_MATCH))
                ok = responses.get("200")
                if ok is not None:
                    ok.setdefault("headers", {}).update(ETAG)
            for code, response in add.items():
                responses.setdefault(code, response)
    return result
