"""gis_api."""
