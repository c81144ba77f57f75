"""WSGI entry point for gunicorn."""

from webapp import create_app

app = create_app()
