"""`jobctl dashboard` (SPEC section 13): a local web page over the same documents as `--json`.

Imported only by its command, so `status` and `launch` never pay for it. Standard library only:
`http.server.ThreadingHTTPServer` serves the pages, JSON under `/api/`, and the static files kept
in this package; the Timeline and Usage charts are SVG drawn here, server-side.
"""
