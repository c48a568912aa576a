"""WSGI entry point for gunicorn: `gunicorn -c python:backend.gunicorn_conf`."""
from . import create_app

app = create_app()
