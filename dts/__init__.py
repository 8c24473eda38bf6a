"""The Distributed Test System's library: everything the top-level scripts (celery_app.py, dispatch.py,
scale.py, load_test.py) build on, one concern per module. docs/concepts/architecture.md lists them."""
