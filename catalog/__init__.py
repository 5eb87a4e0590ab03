"""Lode's marketplace service: catalogue, circulation, delivery and metering (billing lives in ``billing``)."""
