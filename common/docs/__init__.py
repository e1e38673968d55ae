"""Documents generated from the code: OpenAPI (from route tables and `@doc` markers) and AsyncAPI (from
the manifests' event schemas). Read by the gateway, the services' `/openapi.json` and the README."""
