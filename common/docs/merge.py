"""One OpenAPI document out of several, at the JSON level: the gateway's own part (built live) and the
services' fragments (built ahead of time and committed, `gateway.docfragments`), so the gateway process
never imports a service's handlers to describe them.

What may be merged, and what is refused (`DocumentConflict`, naming what clashes) rather than letting one
side silently win: a path+method in two documents; a component (schema, header, security scheme) under one
name with two different contents. The same component in both (every fragment has `Error`) is kept once.
Tags are kept in order of first appearance; the base document's `openapi` and `info` are the result's.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any


class DocumentConflict(ValueError):
    """Two documents say different things under one name: they cannot be merged."""


def merge_documents(base: Mapping[str, Any], fragments: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """`base` with every fragment's paths, components and tags added; paths sorted like the builder's."""
    documents = [*fragments, base]  # the fragments' tags come first: the services before the gateway's own
    paths: dict[str, dict[str, Any]] = {}
    components: dict[str, dict[str, Any]] = {}
    tags: dict[str, dict[str, Any]] = {}
    for document in documents:
        for path, item in document.get("paths", {}).items():
            merged = paths.setdefault(path, {})
            for method, operation in item.items():
                if method in merged:
                    raise DocumentConflict(f"{method.upper()} {path} is described twice")
                merged[method] = operation
        for kind, named in document.get("components", {}).items():
            into = components.setdefault(kind, {})
            for name, component in named.items():
                if name in into and into[name] != component:
                    raise DocumentConflict(f"components/{kind}/{name} has two different definitions")
                into[name] = component
        for tag in document.get("tags", []):
            if tags.setdefault(tag["name"], tag) != tag:
                raise DocumentConflict(f"tag {tag['name']!r} has two different descriptions")
    merged = {
        "paths": {path: paths[path] for path in sorted(paths)},
        "components": components,
        "tags": list(tags.values()),
    }
    return {key: merged.get(key, value) for key, value in {**base, **merged}.items()}  # base's order of keys
