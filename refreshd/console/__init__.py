"""The operator console: server-rendered HTML pages at /console, served by refreshd itself.

Pages read and write through the same functions as the JSON API (`ConfigResource.items`,
`.write`, `.delete`, the experiment report, the decision audit), so validation and reports
exist once; the console adds HTML, inline SVG charts drawn on the server, and a little plain
JavaScript (live overview, JSON syntax hints). Its routes are not part of the JSON route table
(`refreshd.http.routes.ROUTES`) nor of /openapi.json: `refreshd.console.app.serves` names them.
"""
