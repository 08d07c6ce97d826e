"""The Ganeti-compatible REST API (spec/rapi.md); see doc/design-rapi.md.

app.py is the ASGI application served by corral-rapi (server/rapi.py); the
rlib_*.py modules are the resources; users.py is the users file.
"""
