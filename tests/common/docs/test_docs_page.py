"""`GET /docs`: Swagger UI from this host only (works offline), no token, its files served by the gateway,
under a Content-Security-Policy that lets it run only its own code, and never in a frame."""

from __future__ import annotations

import base64
import hashlib
import re
from html.parser import HTMLParser

from aiohttp.test_utils import TestClient

from gateway.apidocs import SWAGGER_UI_DIR


class Links(HTMLParser):
    """Every URL the page makes the browser load or offer: src, href, and the spec URL of the script."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []
        self.scripts: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._in_script = tag == "script"
        self.urls.extend(value for name, value in attrs if name in ("src", "href", "action") and value)

    def handle_endtag(self, tag: str) -> None:
        self._in_script = False

    def handle_data(self, data: str) -> None:
        if self._in_script and data.strip():
            self.scripts.append(data)


async def page_links(gateway: TestClient) -> Links:
    response = await gateway.get("/docs")
    assert response.status == 200
    assert response.content_type == "text/html"
    links = Links()
    links.feed(await response.text())
    return links


async def test_the_docs_page_needs_no_token_and_loads_nothing_from_elsewhere(gateway: TestClient) -> None:
    links = await page_links(gateway)
    assert links.urls, "the page loads no assets?"
    for url in links.urls:
        assert url.startswith("/") and not url.startswith("//"), f"off-host URL {url}"
    script = "\n".join(links.scripts)
    assert 'url: "/api/v1/openapi.json"' in script
    assert "validatorUrl: null" in script  # Swagger UI would otherwise call validator.swagger.io
    assert "http://" not in script and "https://" not in script


async def test_every_asset_the_page_references_is_served(gateway: TestClient) -> None:
    links = await page_links(gateway)
    types = {".css": ("text/css",), ".js": ("text/javascript", "application/javascript"), ".png": ("image/png",)}
    fetched = 0
    for url in links.urls:
        response = await gateway.get(url)
        assert response.status == 200, url
        body = await response.read()
        suffix = url[url.rfind(".") :]
        if url.startswith("/docs/static/"):
            assert body == (SWAGGER_UI_DIR / url.rsplit("/", 1)[1]).read_bytes()
            assert response.content_type in types[suffix], url
            fetched += 1
    assert fetched >= 3  # the stylesheet, the icon and the bundle


async def test_only_the_bundles_own_files_are_served(gateway: TestClient) -> None:
    for name in ("nope.js", "..%2F..%2Fswagger_ui_bundle%2F__init__.py", ".hidden", "%2Fetc%2Fpasswd"):
        response = await gateway.get("/docs/static/" + name)
        assert response.status == 404, name
        assert (await response.json())["error"]["code"] == "not_found"


def csp_directives(policy: str) -> dict[str, list[str]]:
    parsed = (part.split() for part in policy.split(";") if part.strip())
    return {name: sources for name, *sources in parsed}


def sha256_source(block: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(block.encode()).digest()).decode() + "'"


async def test_the_docs_page_may_run_only_its_own_code_and_may_not_be_framed(gateway: TestClient) -> None:
    response = await gateway.get("/docs")
    html = await response.text()
    policy = csp_directives(response.headers["Content-Security-Policy"])

    assert response.headers["X-Frame-Options"] == "DENY"
    assert policy["frame-ancestors"] == ["'none'"] and policy["default-src"] == ["'none'"]
    # Every inline block the page has is allowed by its hash, and nothing inline beyond them may run.
    for directive, tag in (("script-src", "script"), ("style-src", "style")):
        blocks = re.findall(rf"<{tag}>(.*?)</{tag}>", html, flags=re.DOTALL)
        assert blocks, tag
        assert {sha256_source(block) for block in blocks} <= set(policy[directive])
        assert "'unsafe-inline'" not in policy[directive] and "'unsafe-eval'" not in policy[directive]
    # This host only (Swagger UI's icons are data: images); "Try it out" calls this host only.
    sources = [source for found in policy.values() for source in found]
    assert not [source for source in sources if "://" in source or source in ("*", "http:", "https:")]
    assert policy["connect-src"] == ["'self'"]


async def test_the_docs_assets_say_nosniff_and_name_no_server(gateway: TestClient) -> None:
    response = await gateway.get("/docs/static/swagger-ui-bundle.js")
    assert response.status == 200
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert "Server" not in response.headers
