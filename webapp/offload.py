"""Long C work (argon2) off the gevent loop: in a native thread it lets the worker's other requests go on."""

from __future__ import annotations


def off_loop(fn, *args):
    """fn(*args), in gevent's native thread pool when this process is monkey-patched, else right here."""
    try:  # gevent only where gunicorn runs gevent workers; importing it elsewhere costs for nothing
        from gevent import get_hub, monkey
    except ImportError:
        return fn(*args)
    if not monkey.is_module_patched("threading"):
        return fn(*args)
    return get_hub().threadpool.apply(fn, args)
