"""Telling the parties: events about their applications, licences, payments and products, in an
in-app feed and as signed webhooks (``events`` → ``feed`` / ``endpoints`` → ``dispatcher``)."""
