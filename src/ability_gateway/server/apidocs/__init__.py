"""The API's own documentation: Swagger UI and ReDoc served offline, and example requests.

``endpoints`` serves ``/docs`` and ``/redoc`` from the vendored assets under ``static/`` (no
CDN: the pages work on a network without internet); ``examples`` writes one example invoke
body per ability of the catalog into the OpenAPI document.
"""
