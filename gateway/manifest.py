"""What the gateway is, for the tools that read it (`common.contracts.manifest`): its app. It owns no data,
publishes and consumes no events; its own routes document themselves (`gateway.apidocs`)."""

from __future__ import annotations

from common.contracts.manifest import ServiceManifest

MANIFEST = ServiceManifest(name="gateway", app="gateway.app:create_app")
