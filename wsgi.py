"""gunicorn wsgi:app"""
import sys

from portal import create_app
from portal.config import ConfigError

try:
    app = create_app()
except ConfigError as error:  # one line naming what is missing, no traceback
    sys.exit(f"portal: {error}")
