"""set_metadata's former address, kept while webapp/resources/webhooks.py imports it from here."""
from webapp.resources.lead import set_metadata

__all__ = ["set_metadata"]
