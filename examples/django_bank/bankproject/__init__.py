"""The example bank's Django project: settings, URLs and the database URL parser."""
