"""`GET /docs`: the API's reference as one HTML page made from its OpenAPI schema on the server, with
nothing fetched from elsewhere (Swagger UI loads its scripts from a CDN, and is blank offline)."""

from __future__ import annotations

import html
import json
from typing import Any


def _schema(schema: dict[str, Any], components: dict[str, Any]) -> dict[str, Any]:
    """A request body's schema with its `$ref` followed."""
    reference = schema.get("$ref", "")
    return components.get(reference.rpartition("/")[2], schema) if reference else schema


def reference_page(openapi: dict[str, Any]) -> str:
    """Each route: its method and path, what it does, and for a body its fields with their descriptions and
    examples."""
    components = openapi.get("components", {}).get("schemas", {})
    sections = []
    for path, methods in openapi.get("paths", {}).items():
        for method, operation in methods.items():
            body = operation.get("requestBody", {}).get("content", {}).get("application/json", {})
            fields = []
            for name, field in _schema(body.get("schema", {}), components).get("properties", {}).items():
                example = json.dumps(field.get("examples", [None])[0], ensure_ascii=False)
                fields.append(
                    f"<li><code>{html.escape(name)}</code>: {html.escape(field.get('description', ''))}"
                    f"<br>example: <code>{html.escape(example)}</code></li>"
                )
            about = operation.get("description") or operation.get("summary", "")
            sections.append(
                f"<h2><code>{method.upper()} {html.escape(path)}</code></h2><p>{html.escape(about)}</p>"
                + (f"<p>JSON body:</p><ul>{''.join(fields)}</ul>" if fields else "")
            )
    title = html.escape(openapi.get("info", {}).get("title", "API"))
    style = "body{font:15px/1.5 system-ui,sans-serif;max-width:46rem;margin:2rem auto;padding:0 1rem}"
    return (
        f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>{title} API</title>"
        f"<style>{style}</style></head><body><h1>{title} API</h1>"
        f"<p>{html.escape(openapi.get('info', {}).get('description', ''))}; the schema: "
        f"<a href='/openapi.json'>/openapi.json</a>. Errors are <code>{{\"error\": ...}}</code> with their status.</p>"
        + "".join(sections)
        + "</body></html>"
    )
