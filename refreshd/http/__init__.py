"""The wire: the aiohttp app, routes, handlers, the JSON codec, errors, OpenAPI."""
