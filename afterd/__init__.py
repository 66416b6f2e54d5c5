"""after: cron no more. Tasks are CouchDB documents; named workers run them at their date."""

__version__ = "0.1.0"
