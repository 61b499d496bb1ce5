"""HTTP servers inside the client: the control API with its status page and metrics, and
the bundled WATS-compatible receiver, on one small server base (`base`).
"""
